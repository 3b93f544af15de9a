"""--fix never loses a probe or a line: each test is a defect users reported."""

import os
import resource
import stat
import subprocess
import sys

from tests.conftest import DEMO, ROOT

LIBBPF = (
    '#include "vmlinux.h"\n'
    "\f\n"  # a page break, as in many kernel-style sources
    'SEC("kprobe/demo_read")\n'
    "int BPF_KPROBE(read_entry) { return 0; }\n"
    'SEC("kprobe/demo_write+010")\n'
    "int BPF_KPROBE(write_entry) { return 0; }\n"
    'SEC("kprobe/demo_read")\n'
    "int BPF_KPROBE(read_again) { return 0; }\n"
    'char LICENSE[] SEC("license") = "GPL";\n'
)


def run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "probelint", str(DEMO / "demo.elf"), "--no-cache", *args],
                          capture_output=True, text=True, cwd=ROOT, **kwargs)


def test_a_probe_another_file_has_is_kept(tmp_path):
    (tmp_path / "vfsstat.bpf.c").write_text('SEC("kprobe/demo_read")\nint BPF_KPROBE(r) { return 0; }\n'
                                            'SEC("kprobe/demo_write")\nint BPF_KPROBE(w) { return 0; }\n')
    (tmp_path / "vfsstat.bt").write_text("kprobe:demo_read,\nkprobe:demo_write\n{ @[func] = count(); }\n")
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    for flag in ("--fix", "--unsafe-fixes"):
        proc = run(flag, "--fail-level", "error", str(tmp_path))
        assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before
        assert "applied 0 fixes" in proc.stderr
    assert "[KP409]" in run("--select", "KP409", str(tmp_path)).stdout  # still said, as information


def test_form_feed_does_not_shift_lines(tmp_path):
    source = tmp_path / "prog.bpf.c"
    source.write_text(LIBBPF)
    proc = run("--unsafe-fixes", str(source))
    # octal to hex (+0x8, mid-instruction), then moved to the next boundary: one token changed;
    # the duplicate SEC stays (its program would be left without a section)
    assert source.read_text() == LIBBPF.replace("demo_write+010", "demo_write+0x9")
    assert "applied 1 fix\n" in proc.stderr


def test_form_feed_in_a_probe_list(tmp_path):
    probes = tmp_path / "p.txt"
    probes.write_text("demo_read+0x5 \f # page\ndemo_write+010\n")
    run("--fix", str(probes))
    assert probes.read_text() == "demo_read+0x5 \f # page\ndemo_write+0x8\n"


def test_a_file_named_twice_is_read_and_fixed_once(tmp_path):
    probes = tmp_path / "probes.txt"
    probes.write_text("demo_read+0x5\ndemo_write+010\n")
    (tmp_path / "link.txt").symlink_to(probes)
    for names in ([probes, probes], [tmp_path, probes], [probes, tmp_path / "link.txt"]):
        assert "KP409" not in run("--select", "KP409", *map(str, names)).stdout
        proc = run("--unsafe-fixes", *map(str, names))
        assert probes.read_text() == "demo_read+0x5\ndemo_write+0x9\n", names
        assert (tmp_path / "link.txt").is_symlink()
        probes.write_text("demo_read+0x5\ndemo_write+010\n")
    assert "applied 1 fix\n" in proc.stderr


def test_a_duplicate_goes_only_as_an_unsafe_fix_of_its_token(tmp_path):
    script = tmp_path / "s.bt"
    text = ("kprobe:demo_read, kprobe:demo_write+0x5, kprobe:demo_read, kprobe:demo_read { @a = count(); }\n"
            "kprobe:demo_write+0x5,\n"
            "kprobe:demo_write\n"
            "{ @b = count(); }\n"
            "kprobe:demo_write { @c = count(); }\n")
    script.write_text(text)
    run("--fix", str(script))
    assert script.read_text() == text  # not a safe fix
    proc = run("--unsafe-fixes", str(script))
    assert script.read_text() == ("kprobe:demo_read, kprobe:demo_write+0x5 { @a = count(); }\n"
                                  "kprobe:demo_write\n"
                                  "{ @b = count(); }\n"
                                  "kprobe:demo_write { @c = count(); }\n")  # the only probe of its block stays
    assert "applied 3 fixes\n" in proc.stderr


def test_crlf_mode_and_encoding_are_kept(tmp_path):
    script = tmp_path / "t.sh"
    data = "#!/bin/sh\r\n# café\r\necho 'p:w demo_write+010' >> /sys/kernel/tracing/kprobe_events\r\n"
    script.write_bytes(data.encode())
    script.chmod(0o751)
    run("--fix", str(script))
    assert script.read_bytes() == data.replace("+010", "+0x8").encode()
    assert stat.S_IMODE(script.stat().st_mode) == 0o751


def test_a_read_only_file_is_refused(tmp_path):
    probes = tmp_path / "p.txt"
    probes.write_text("demo_write+010\n")
    probes.chmod(0o444)
    proc = run("--fix", str(probes))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"probelint: error: {probes}: read-only")
    assert probes.read_text() == "demo_write+010\n"


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    probes = tmp_path / "p.txt"
    text = "demo_write+010\n" + "# padding\n" * 2000  # larger than the file size limit below
    probes.write_text(text)
    proc = run("--fix", str(probes), preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"probelint: error: {probes}: cannot rewrite:")
    assert os.listdir(tmp_path) == ["p.txt"] and probes.read_text() == text


def test_lines_end_at_newline_only_and_stale_text_is_left():
    from probelint.findings import Fix
    from probelint.fixes import Edit, rewrite

    octal = Fix("demo_write+0x8", True, "hex")
    text = "a\r\n\f b \v\x1c\x1d\x1e\x85\u2028\u2029c\r\nkprobe:demo_write+010 { }\r\n"
    assert rewrite(text, [Edit(3, 8, "demo_write+010", octal)], "bpftrace") == (text.replace("+010", "+0x8"), 1)
    # the text at the location is no longer what was checked: nothing is touched
    assert rewrite(text, [Edit(2, 8, "demo_write+010", octal)], "bpftrace") == (text, 0)
    assert rewrite(text, [Edit(3, 8, "demo_write+01", octal)], "bpftrace") == (text, 0)
    assert rewrite(text, [Edit(3, 9, "emo_write+010", octal)], "bpftrace") == (text, 0)


def test_removing_a_duplicate_keeps_the_syntax():
    from probelint.findings import Fix
    from probelint.fixes import Edit, rewrite

    remove = Fix("", False, "remove the duplicate probe", remove=True)

    def without(text, line, column, old, kind="bpftrace"):
        return rewrite(text, [Edit(line, column, old, remove)], kind)[0]

    assert without("kprobe:a, kprobe:a { }\n", 1, 18, "a") == "kprobe:a { }\n"
    assert without("kprobe:a { } kprobe:a, kprobe:b { }\n", 1, 21, "a") == "kprobe:a { } kprobe:b { }\n"
    assert without("kprobe:a { }\nkprobe:a { }\n", 2, 8, "a") == "kprobe:a { }\nkprobe:a { }\n"
    assert without("kprobe:b,\n  kprobe:a,\nkprobe:c\n{ }\n", 2, 10, "a") == "kprobe:b,\nkprobe:c\n{ }\n"
    assert without('SEC("kprobe/a")\nint f(void) { return 0; }\n', 1, 13, "a", "libbpf").startswith('SEC("kprobe/a")')
    assert without("echo 'p:e a' >> kprobe_events\n", 1, 11, "a", "shell") == "echo 'p:e a' >> kprobe_events\n"
    assert without("b\na   # again\n", 2, 1, "a", "list") == "b\n"
    assert without("b\np:ev a %di\n", 2, 6, "a", "list") == "b\np:ev a %di\n"  # an event definition, not only a probe


def test_a_hard_linked_file_is_fixed_in_place(tmp_path):
    probes = tmp_path / "probes.txt"
    probes.write_text("demo_read+0x5\ndemo_write+010\n")
    other = tmp_path / "elsewhere.txt"
    os.link(probes, other)
    inode = probes.stat().st_ino
    proc = run("--unsafe-fixes", str(probes))
    assert "applied 1 fix\n" in proc.stderr
    # a rename over `probes` would have left `elsewhere.txt` holding the old text
    assert other.read_text() == probes.read_text() == "demo_read+0x5\ndemo_write+0x9\n"
    assert probes.stat().st_ino == inode and probes.stat().st_nlink == 2


def test_hard_links_to_one_file_are_read_once(tmp_path):
    probes = tmp_path / "probes.txt"
    probes.write_text("demo_read+0x5\n")
    os.link(probes, tmp_path / "again.txt")
    assert "KP409" not in run("--select", "KP409", str(tmp_path)).stdout
    assert "KP409" not in run("--select", "KP409", str(probes), str(tmp_path / "again.txt")).stdout
