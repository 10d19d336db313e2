"""Search everything a sandbox can read for one secret, without being given the secret (issue 15).

Run inside the sandbox (stdlib only, any Python >= 3.8):
    python3 leakscan.py SHA256_HEX SINCE_EPOCH [ROOT ...]
The secret the tests plant is `rcc-real-` + 32 lower-case hex digits. The scanner is given only the SHA-256 of
those 32 hex digits, so running it leaks nothing: it hashes every 32-digit window of every hex run it meets and
compares. It prints one JSON object: {"found": [where...], "files": N, "bytes": N, "procs": N, "mem_bytes": N,
"unreadable": N}.

What it reads:
- every regular file under ROOT (default /) whose mtime or ctime is at or after SINCE_EPOCH (a file last written
  before the secret existed cannot hold it; ctime also catches copies that keep their mtime), plus every file
  under the home, /tmp, /var/tmp, /dev/shm, /run and /etc whatever its times; never /proc, /sys or /dev devices;
- for every process it can see: /proc/PID/environ, cmdline, and the readable, private memory of the process
  (/proc/PID/mem: the pages of every readable and writable mapping that were ever touched, from
  /proc/PID/maps and /proc/PID/pagemap) where the kernel lets it;
- links are not followed (a link's target is read where the walk reaches it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import struct
import sys
from typing import Any

HEX_RUN = re.compile(rb"[0-9a-f]{32,}")
MAX_FILE = 256 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
ALWAYS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/etc")
SKIP_TOP = ("/proc", "/sys", "/dev")


class Scan:
    def __init__(self, target: str) -> None:
        self.target = target
        self.found: list[str] = []
        self.files = self.bytes = self.procs = self.mem_bytes = self.unreadable = 0

    def check(self, where: str, data: bytes) -> None:
        for m in HEX_RUN.finditer(data):
            run = m.group()
            for i in range(len(run) - 31):
                if hashlib.sha256(run[i : i + 32]).hexdigest() == self.target:
                    self.found.append(where)
                    return

    def read_file(self, path: str) -> None:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_FILE)
        except OSError:
            self.unreadable += 1
            return
        self.files += 1
        self.bytes += len(data)
        self.check(path, data)

    def walk(self, root: str, since: float, always: bool) -> None:
        for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
            if dirpath in SKIP_TOP or dirpath.startswith(tuple(p + "/" for p in SKIP_TOP)):
                dirnames[:] = []
                continue
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                if always or st.st_mtime >= since or st.st_ctime >= since:
                    self.read_file(path)

    def processes(self) -> None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():  # its own memory holds what it just read
                continue
            self.procs += 1
            for part in ("environ", "cmdline"):
                try:
                    with open(f"/proc/{pid}/{part}", "rb") as f:
                        self.check(f"/proc/{pid}/{part}", f.read())
                except OSError:
                    self.unreadable += 1
            self.memory(pid)

    def memory(self, pid: str) -> None:
        try:
            with open(f"/proc/{pid}/maps") as f:
                maps = f.read().splitlines()
            mem = open(f"/proc/{pid}/mem", "rb", buffering=0)  # noqa: SIM115  (closed by the with below)
            pagemap = open(f"/proc/{pid}/pagemap", "rb", buffering=0)  # noqa: SIM115  (closed below)
        except OSError:
            self.unreadable += 1
            return
        with mem, pagemap:
            for line in maps:
                fields = line.split()
                # readable and writable: what a process wrote at run time (file-backed read-only mappings hold the
                # file's bytes, which the file walk reads)
                if len(fields) < 2 or not fields[1].startswith("rw") or "[vvar]" in line or "[vsyscall]" in line:
                    continue
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                where = f"/proc/{pid}/mem {fields[0]} {fields[-1] if len(fields) > 5 else ''}"
                for start, end in self.touched(pagemap, lo, hi):
                    try:
                        mem.seek(start)
                        data = mem.read(end - start)
                    except (OSError, OverflowError, ValueError):
                        continue
                    self.mem_bytes += len(data)
                    self.check(where, data)

    @staticmethod
    def touched(pagemap: Any, lo: int, hi: int) -> list[tuple[int, int]]:
        """The runs of pages in [lo, hi) that are in memory or swapped out (pagemap bits 63, 62): a page never
        touched reads as zeros and cannot hold anything. Without a readable pagemap: the whole range."""
        try:
            pagemap.seek(lo // PAGE * 8)
            raw = pagemap.read((hi - lo) // PAGE * 8)
        except (OSError, OverflowError, ValueError):
            return [(lo, hi)]
        runs: list[tuple[int, int]] = []
        start = -1
        for i, (entry,) in enumerate(struct.iter_unpack("<Q", raw)):
            used = bool(entry >> 62 & 3)
            if used and start < 0:
                start = lo + i * PAGE
            elif not used and start >= 0:
                runs.append((start, lo + i * PAGE))
                start = -1
        if start >= 0:
            runs.append((start, lo + len(raw) // 8 * PAGE))
        return runs


def main(argv: list[str]) -> int:
    target, since = argv[0], float(argv[1])
    roots = argv[2:] or ["/"]
    scan = Scan(target)
    home = os.environ.get("HOME", "")
    for d in (*ALWAYS, *([home] if home else [])):
        if os.path.isdir(d):
            scan.walk(d, since, True)
    for r in roots:
        scan.walk(r, since, False)
    scan.processes()
    print(
        json.dumps(
            {
                "found": sorted(set(scan.found)),
                "files": scan.files,
                "bytes": scan.bytes,
                "procs": scan.procs,
                "mem_bytes": scan.mem_bytes,
                "unreadable": scan.unreadable,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
