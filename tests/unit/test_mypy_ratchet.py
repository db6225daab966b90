"""The mypy ratchet (tests/mypy_ratchet.py) on made-up counts: more errors than the baseline fail,
fewer say how to lower it, --update lowers and never raises. (mypy itself runs in .ci/run.)"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mypy_ratchet


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, baseline: dict[str, int], now: dict[str, int]) -> Path:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    monkeypatch.setattr(mypy_ratchet, "BASELINE", path)
    output = "\n".join(f"{f}:1: error: x  [misc]" for f, n in now.items() for _ in range(n))
    monkeypatch.setattr(mypy_ratchet, "run_mypy", lambda: (Counter(now), output))
    return path


def test_more_errors_than_the_baseline_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _setup(tmp_path, monkeypatch, {"compat/a.py": 2}, {"compat/a.py": 3, "compat/strict.py": 1})
    assert mypy_ratchet.main([]) == 1
    err = capsys.readouterr().err
    assert "compat/a.py: 3 type error(s), the baseline allows 2" in err
    assert "compat/strict.py: 1 type error(s), the baseline allows 0" in err


def test_fewer_errors_say_how_to_lower_the_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    path = _setup(tmp_path, monkeypatch, {"compat/a.py": 2, "compat/b.py": 1}, {"compat/a.py": 1})
    assert mypy_ratchet.main([]) == 0
    assert "lower it with python tests/mypy_ratchet.py --update" in capsys.readouterr().out
    assert mypy_ratchet.main(["--update"]) == 0
    assert json.loads(path.read_text()) == {"compat/a.py": 1}


def test_update_never_raises_the_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _setup(tmp_path, monkeypatch, {"compat/a.py": 1}, {"compat/a.py": 2})
    assert mypy_ratchet.main(["--update"]) == 1
    assert json.loads(path.read_text()) == {"compat/a.py": 1}


def test_the_committed_baseline_names_real_files() -> None:
    root = Path(mypy_ratchet.__file__).resolve().parent.parent
    assert all((root / f).is_file() for f in mypy_ratchet.load_baseline())


def test_mypy_is_not_above_the_baseline() -> None:
    # mypy once over the tree (~3 s cold on two cores, well under a second with its cache).
    counts, output = mypy_ratchet.run_mypy()
    baseline = mypy_ratchet.load_baseline()
    worse = {f: n for f, n in counts.items() if n > baseline.get(f, 0)}
    assert worse == {}, "\n".join(line for line in output.splitlines() if line.split(":", 1)[0] in worse)
