"""An install from a wheel carries what a source checkout reads in place: task configs and demo data."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_every_task_file_and_the_demo_data(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools installed")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("dsas_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tasks = {p.relative_to(ROOT / "tasks").as_posix() for p in (ROOT / "tasks").rglob("*") if p.is_file()}
    shipped = {name.split("/share/dsas_bench/tasks/", 1)[1] for name in names if "/share/dsas_bench/tasks/" in name}
    assert tasks and shipped == tasks
    demo = {p.name for p in (ROOT / "dsas_bench" / "data" / "demo").iterdir() if p.is_file()}
    assert {f"dsas_bench/data/demo/{name}" for name in demo} <= names
    behaviors = {p.relative_to(ROOT).as_posix() for p in (ROOT / "dsas_bench" / "behaviors" / "data").rglob("*")
                 if p.is_file()}
    assert behaviors and behaviors <= names


def test_the_readme_commands_and_images_exist():
    readme = (ROOT / "README.md").read_text()
    images = re.findall(r"(docs/[\w.-]+\.png)", readme)
    assert {"docs/pareto-demo.png", "docs/explain-demo.png"} <= set(images)
    assert all((ROOT / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    test_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{test_command}\n```" in readme  # CI runs exactly the README's test command
