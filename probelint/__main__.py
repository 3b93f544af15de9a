from probelint.cli import entry

entry()
