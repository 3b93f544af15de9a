"""Build the busybox initramfs that registers the probes inside the guest.

The archive is written directly in the cpio ``newc`` format (gzip-compressed),
so no ``cpio`` binary is needed.  The guest's ``/init`` reports on the second
serial port (``/dev/ttyS1``) one record per line:

``R <i> OK`` / ``R <i> ERR <text>``  write of probe *i* to ``kprobe_events``
``E <i> <line>``                      ``tracing/error_log`` after a failed write
``D <i> <line>``                      new ``dmesg`` lines after a failed write
``N <i> ERR <text>``                  enabling probe *i* failed
``I <module> OK|ERR <text>``          ``insmod``
``Y <module> <line>``                 the ``dmesg`` lines of that ``insmod`` (why a module did not load;
                                      "Failed to re-register probe pN" of a pending probe)
``S <phase> <seconds> <optimized>``   optimizer settled
``L <phase> <line>``                  ``/sys/kernel/debug/kprobes/list``
``K <line>``                          ``/proc/kallsyms`` lines of the probed names
``V <name> <text>``                   ``/sys/devices/system/cpu/vulnerabilities/*``
``U <uname> / C <model name>``        kernel release / CPU model
``F <flags> / B <bugs>``              ``/proc/cpuinfo`` flags and bugs of CPU 0 (the features the kernel set)
``M <line>``                          boot dmesg lines of the mitigation choices (Spectre V2, RETBleed, ITS, ...)
``G <line>``                          dmesg tail at the end
``X <line>``                          what a mode's ``before_phase`` hook reports (vmtest --live-check)
``T <phase> <event> <seconds>``       guest uptime at milestones
``DONE``                              the script ran to completion
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpioEntry", "GuestProbe", "build_initramfs", "init_script", "read_newc", "write_newc"]


@dataclass
class CpioEntry:
    """One archive member: a regular file, directory, symlink or character device."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def write_newc(entries: list[CpioEntry]) -> bytes:
    """Serialise ``entries`` as an uncompressed cpio ``newc`` (070701) archive with trailer."""
    out = io.BytesIO()
    all_entries = [*entries, CpioEntry("TRAILER!!!", 0)]
    for ino, e in enumerate(all_entries, start=1):
        name = e.name.lstrip("/").encode() + b"\0"
        nlink = 2 if (e.mode & 0o170000) == 0o040000 else 1
        fields = (
            ino if e.name != "TRAILER!!!" else 0,
            e.mode,
            0,  # uid
            0,  # gid
            nlink if e.name != "TRAILER!!!" else 1,
            0,  # mtime
            len(e.data),
            0,  # devmajor
            0,  # devminor
            e.rdev[0],
            e.rdev[1],
            len(name),
            0,  # check
        )
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        out.write(header + name)
        out.write(b"\0" * _pad4(len(header) + len(name)))
        out.write(e.data)
        out.write(b"\0" * _pad4(len(e.data)))
    return out.getvalue()


def read_newc(blob: bytes) -> list[CpioEntry]:
    """Parse a ``newc`` archive (for tests); stops at the trailer."""
    entries: list[CpioEntry] = []
    pos = 0
    while True:
        if blob[pos : pos + 6] != b"070701":
            raise ValueError(f"bad cpio magic at {pos}")
        f = [int(blob[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        pos += 110
        name = blob[pos : pos + namesize - 1].decode()
        pos += namesize
        pos += _pad4(110 + namesize)
        data = blob[pos : pos + filesize]
        pos += filesize + _pad4(filesize)
        if name == "TRAILER!!!":
            return entries
        entries.append(CpioEntry(name, f[1], data, (f[9], f[10])))


@dataclass
class GuestProbe:
    """A probe as the guest sees it: global index, phase, ``p``/``r`` type and spec body."""

    index: int
    phase: int
    kind: str
    body: str


_INIT = r"""#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
T=/sys/kernel/tracing
L=/sys/kernel/debug/kprobes/list
stty -F /dev/ttyS1 115200 raw -echo 2>/dev/null
exec 3>/dev/ttyS1
up() { read u _ < /proc/uptime; echo "T $1 $2 $u" >&3; }
one() { tr '\n' ' ' < "$1"; }
up 0 boot
echo "U $(uname -r)" >&3
echo "C $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')" >&3
echo "F $(grep -m1 '^flags' /proc/cpuinfo | sed 's/.*: //')" >&3
echo "B $(grep -m1 '^bugs' /proc/cpuinfo | sed 's/.*: //')" >&3
dmesg | grep -iE 'spectre|retbleed|srso|mitigat|indirect target|its:|speculat' | sed 's/^/M /' >&3
for f in /sys/devices/system/cpu/vulnerabilities/*; do echo "V ${f##*/} $(cat $f)" >&3; done
load_modules() {
  while read -r m; do
    [ -n "$m" ] || continue
    dmesg -c > /dev/null
    if insmod "/lib/modules/$m" 2>/tmp/err; then echo "I $m OK" >&3
    else echo "I $m ERR $(one /tmp/err)" >&3; fi
    dmesg -c | sed "s|^|Y $m |" >&3
  done < /modules.txt
}
# pending probes (@PENDING@ = 1): the modules are loaded after phase 0's probes are defined and enabled
[ @PENDING@ = 1 ] || load_modules
dmesg -c > /dev/null
: > $T/error_log
up 0 registering
settle() {
  last=-1; same=0; t=0
  while [ $t -lt @MAX@ ]; do
    c=$(grep -c OPTIMIZED $L)
    if [ "$c" = "$last" ]; then same=$((same+1)); else same=0; last=$c; fi
    [ $same -ge @STABLE@ ] && [ $t -ge @MIN@ ] && break
    sleep 1; t=$((t+1))
  done
  echo "S $1 $t $last" >&3
}
before_phase() { :; }
@HOOK@
phase=0
while [ $phase -lt @NPHASES@ ]; do
  before_phase $phase
  created=""
  while read -r ph idx typ spec; do
    [ "$ph" = "$phase" ] || continue
    if echo "$typ:pl/p$idx $spec" >> $T/kprobe_events 2>/tmp/err; then
      echo "R $idx OK" >&3
      created="$created $idx"
    else
      echo "R $idx ERR $(one /tmp/err)" >&3
      sed "s/^/E $idx /" $T/error_log >&3
      : > $T/error_log
      dmesg -c | sed "s/^/D $idx /" >&3
    fi
  done < /probes.txt
  up $phase registered
  for idx in $created; do
    echo 1 > $T/events/pl/p$idx/enable 2>/tmp/err || echo "N $idx ERR $(one /tmp/err)" >&3
  done
  up $phase enabled
  if [ $phase = 0 ] && [ @PENDING@ = 1 ]; then load_modules; up 0 loaded; fi
  [ -n "$created" ] && settle $phase
  up $phase settled
  sed "s/^/L $phase /" $L >&3
  phase=$((phase+1))
done
[ -s /names.txt ] && grep -F -w -f /names.txt /proc/kallsyms | sed 's/^/K /' >&3
dmesg -c | tail -n 300 | sed 's/^/G /' >&3
up 0 done
echo DONE >&3
exec 3>&-
sleep 0.2
poweroff -f
"""


def init_script(n_phases: int, settle_min: int = 6, settle_stable: int = 4, settle_max: int = 30,
                hook: str = "", *, pending: bool = False) -> str:
    """Return the guest ``/init`` for ``n_phases`` phases and the given optimizer-settle timing (s);
    `hook` may redefine ``before_phase`` (called with the phase number before its probes are written);
    with `pending` the modules are loaded after the first phase's probes are defined and enabled."""
    return (
        _INIT.replace("@HOOK@", hook)
        .replace("@NPHASES@", str(n_phases))
        .replace("@PENDING@", "1" if pending else "0")
        .replace("@MIN@", str(settle_min))
        .replace("@STABLE@", str(settle_stable))
        .replace("@MAX@", str(settle_max))
    )


def build_initramfs(
    busybox: Path,
    probes: list[GuestProbe],
    modules: list[Path] | None = None,
    names: list[str] | None = None,
    n_phases: int = 1,
    settle_min: int = 6,
    settle_stable: int = 4,
    settle_max: int = 30,
    hook: str = "",
    files: dict[str, bytes] | None = None,
    *,
    pending: bool = False,
) -> bytes:
    """Return a gzip-compressed newc initramfs that runs ``probes`` (see the module docstring);
    `hook` as in :func:`init_script`, `files` more regular files (archive path -> bytes) it reads."""
    for p in probes:
        if "\n" in p.body or not re.fullmatch(r"[pr]\d*", p.kind):
            raise ValueError(f"bad probe {p!r}")
    dirs = ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"]
    entries = [CpioEntry(d, 0o040755) for d in dirs]
    entries.append(CpioEntry("dev/console", 0o020600, rdev=(5, 1)))
    entries.append(CpioEntry("bin/busybox", 0o100755, busybox.read_bytes()))
    entries.append(CpioEntry("bin/sh", 0o120777, b"busybox"))
    init = init_script(n_phases, settle_min, settle_stable, settle_max, hook, pending=pending)
    entries.append(CpioEntry("init", 0o100755, init.encode()))
    lines = "".join(f"{p.phase} {p.index} {p.kind} {p.body}\n" for p in probes)
    entries.append(CpioEntry("probes.txt", 0o100644, lines.encode()))
    mod_names: list[str] = []
    for m in modules or []:
        entries.append(CpioEntry(f"lib/modules/{m.name}", 0o100644, m.read_bytes()))
        mod_names.append(m.name)
    entries.append(CpioEntry("modules.txt", 0o100644, "".join(f"{n}\n" for n in mod_names).encode()))
    uniq = sorted(set(names or []))
    entries.append(CpioEntry("names.txt", 0o100644, "".join(f"{n}\n" for n in uniq).encode()))
    entries += [CpioEntry(name, 0o100644, data) for name, data in (files or {}).items()]
    return gzip.compress(write_newc(entries), compresslevel=1)
