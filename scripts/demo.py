"""`make run` until the portal lands: build a demo disk image and walk the engine through its commands.

Everything goes to ./var/demo: a GPT disk with an ext4 filesystem full of files (when sfdisk and
mkfs.ext4 are installed; random data otherwise), two backups with a change between them, a verify and
a restore, each through the real `lifeboat store` command.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

DEMO = Path("var/demo")
LIFEBOAT = str(Path(sys.executable).with_name("lifeboat"))
MiB = 1024 * 1024


def make_image(image: Path, size: int = 64 * MiB) -> None:
    files = DEMO / "files"
    shutil.rmtree(files, ignore_errors=True)
    (files / "etc").mkdir(parents=True)
    (files / "var/log").mkdir(parents=True)
    (files / "etc/hostname").write_text("demo-vm\n")
    (files / "var/log/app.log").write_text("".join(f"line {n}: all is well\n" for n in range(100_000)))
    (files / "blob.bin").write_bytes(random.Random(1).randbytes(8 * MiB))
    with open(image, "wb") as handle:
        handle.truncate(size)
    sfdisk, mkfs = shutil.which("sfdisk") or "/usr/sbin/sfdisk", shutil.which("mkfs.ext4") or "/usr/sbin/mkfs.ext4"
    if os.path.exists(sfdisk) and os.path.exists(mkfs):
        layout = "label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"
        subprocess.run([sfdisk, "-q", str(image)], input=layout, text=True, check=True)
        blocks = (size - 2 * MiB) // 4096
        subprocess.run([mkfs, "-q", "-F", "-b", "4096", "-d", str(files), "-E", "offset=1048576", str(image),
                        str(blocks)], check=True)
    else:
        with open(image, "r+b") as handle:
            handle.write(random.Random(2).randbytes(16 * MiB))


def step(title: str, *args: str) -> None:
    print(f"\n$ lifeboat {' '.join(args)}    # {title}", flush=True)
    subprocess.run([LIFEBOAT, *args], check=False)


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True)
    image, root = DEMO / "demo-vm.img", DEMO / "root"
    make_image(image)
    step("a first, full backup", "store", "backup", str(root), "demo-vm", f"file:{image}")
    with open(image, "r+b") as handle:  # change 1 MiB in the middle
        handle.seek(30 * MiB)
        handle.write(random.Random(3).randbytes(MiB))
    step("an incremental backup: one new chunk", "store", "backup", str(root), "demo-vm", f"file:{image}")
    step("the backup points", "store", "list", str(root), "demo-vm")
    step("re-read and re-hash every chunk", "store", "verify", str(root), "demo-vm")
    step("restore the latest point (sparse)", "store", "restore", str(root), "demo-vm", "latest",
         str(DEMO / "restored.img"))
    same = (DEMO / "restored.img").read_bytes() == image.read_bytes()
    print(f"\nrestored image identical to the source: {same}")
    print(f"Try more: {LIFEBOAT} store --help   (repository root: {root})")
    print("The web portal (http://127.0.0.1:5000, demo logins) arrives with the portal issue.")


if __name__ == "__main__":
    main()
