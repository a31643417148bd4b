"""Issue 11, item 8: the CLI works beside ``make run`` through the instance config the demo writes once."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

from tests.conftest import LIFEBOAT

from .conftest import REPO, Demo, clean_env


def readme_block() -> str:
    """The README's commands for a second terminal beside ``make run``, as printed."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- beside-make-run:.*?-->\n```sh\n(.*?)```", text, re.S)
    assert found, "README.md lost its block of commands beside make run"
    return found.group(1)


def test_readme_commands_work_beside_make_run(demo: Demo, demo_home: Path) -> None:
    block = readme_block()
    assert "127.0.0.1:5000" in block and ".venv/bin/lifeboat" in block
    # As printed, in a second terminal in the project folder (here: a folder with ./.venv and the demo's ./var),
    # with no LIFEBOAT_* variable set; only the port differs (the test's demo serves on a free one).
    script = block.replace("127.0.0.1:5000", f"127.0.0.1:{demo.port}")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=demo_home, env=clean_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    vms, applied = done.stdout.strip().splitlines()[0], done.stdout.strip().splitlines()[-1]
    assert {"web-1", "db-1", "staging-api"} <= {vm["name"] for vm in json.loads(vms)["items"]}
    assert json.loads(applied)["status"] == "applied"
    assert "SECRET_KEY" not in done.stderr


def test_demo_writes_its_instance_config_once_and_privately(demo: Demo) -> None:
    config = demo.var / "instance" / "lifeboat.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text(encoding="utf-8")
    assert re.search(r'^SECRET_KEY = "[0-9a-f]{64}"$', text, re.M)
    assert f'STORAGE_ROOT = "{demo.var / "repositories"}"' in text
    again = subprocess.run([LIFEBOAT, "demo", "init"], env=clean_env(LIFEBOAT_VAR=str(demo.var)),
                           capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and again.stdout.startswith("kept ")
    assert config.read_text(encoding="utf-8") == text  # a restart keeps the key, and so the sessions


def test_environment_overrides_the_instance_config(tmp_path: Path) -> None:
    folder = tmp_path / "instance"
    env = clean_env(LIFEBOAT_INSTANCE_PATH=str(folder), LIFEBOAT_VAR=str(tmp_path / "var"))
    made = subprocess.run([LIFEBOAT, "demo", "init"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0 and made.stdout == f"wrote {folder / 'lifeboat.toml'}\n"
    assert subprocess.run([LIFEBOAT, "db", "upgrade"], env=env, capture_output=True, timeout=120).returncode == 0
    assert (tmp_path / "var" / "lifeboat.db").exists()  # the file's database
    elsewhere = tmp_path / "elsewhere.db"
    overridden = {**env, "LIFEBOAT_DATABASE_URL": f"sqlite:///{elsewhere}"}
    done = subprocess.run([LIFEBOAT, "db", "upgrade"], env=overridden, capture_output=True, timeout=120)
    assert done.returncode == 0 and elsewhere.exists()


def test_an_instance_config_others_may_write_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "instance"
    folder.mkdir()
    config = folder / "lifeboat.toml"
    config.write_text('SECRET_KEY = "chosen-by-someone-else"\n', encoding="utf-8")
    os.chmod(config, 0o666)  # noqa: S103 - the point of the test
    done = subprocess.run([LIFEBOAT, "inventory", "export"], env=clean_env(LIFEBOAT_INSTANCE_PATH=str(folder)),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"lifeboat: error: {config} is writable by other users: refusing to use it (chmod 600 it)\n"


def test_a_broken_instance_config_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "instance"
    folder.mkdir()
    (folder / "lifeboat.toml").write_text("SECRET_KEY = \n", encoding="utf-8")
    done = subprocess.run([LIFEBOAT, "token", "create", "a@b.example", "--scopes", "backups:read"],
                          env=clean_env(LIFEBOAT_INSTANCE_PATH=str(folder)), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "not valid TOML" in done.stderr
