"""The sweep runner: many configs, failures recorded, tables and pictures written."""

import csv
import pathlib

from leakjax import sweep

GOOD = '''
from leakjax.config import base_config

def get_config(preset=""):
    c = base_config()
    c.data.name = "digits"
    c.data.image_size = 8
    c.data.partition = "iid"
    c.model.name = "mlp"
    c.fl.num_clients = 40
    c.fl.rounds = 2
    c.fl.local_epochs = 1
    c.fl.batch_size = 5
    c.attack.steps = 10 if preset == "cpu" else 1000
    c.attack.chunk = 10
    c.output.progress = False
    return c
'''

BROKEN = '''
def get_config(preset=""):
    raise RuntimeError("this config is broken on purpose")
'''


def test_sweep_runs_configs_and_continues_past_failures(tmp_path):
    cdir = tmp_path / "configs"
    cdir.mkdir()
    (cdir / "a_good.py").write_text(GOOD)
    (cdir / "b_broken.py").write_text(BROKEN)
    specs = sweep.expand(f"{cdir}/*.py:cpu")
    assert [pathlib.Path(s.split(":")[0]).name for s in specs] == ["a_good.py", "b_broken.py"]
    rows = sweep.run_sweep(specs, tmp_path / "out", progress=False)
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert "broken on purpose" in rows[1]["error"]
    assert rows[0]["attack"] == "ig" and rows[0]["psnr_mean"] is not None
    out = tmp_path / "out"
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and table[0]["experiment"] == "a_good-cpu"
    assert "| a_good-cpu |" in (out / "results.md").read_text()
    assert (out / "contact_sheet.png").is_file() and (out / "fl_accuracy.png").is_file()
    assert (out / "b_broken-cpu.error.txt").is_file()
