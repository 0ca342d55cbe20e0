"""``jaxsim signal`` end to end."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from jaxsim.cli import main
from jaxsim.mr import default_tissue_properties


def _mrxcat_like(t1, t2, tr, te, flip, pd):
    # Independent on-resonance closed form (Scheffler & Lehnhardt 2003).
    e1, e2 = math.exp(-tr / t1), math.exp(-tr / t2)
    s = pd * (1 - e1) * math.sin(flip)
    return s / (1 - (e1 - e2) * math.cos(flip) - e1 * e2) * math.exp(-te / t2)


def test_signal_command_writes_table_and_plots(tmp_path, capsys):
    out = tmp_path / "sig"
    assert (
        main(
            [
                "signal",
                "--field",
                "3",
                "--tr",
                "4",
                "--te",
                "2",
                "--flip",
                "45",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "lv_myocardium" in printed and "3 T" in printed
    for name in ("signal_vs_flip.png", "signal_vs_offresonance.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    with (out / "signal.csv").open() as f:
        rows = list(csv.DictReader(f))
    props = default_tissue_properties(3.0)
    myo = next(r for r in rows if r["tissue"] == "lv_myocardium")
    expected = _mrxcat_like(
        float(props.of("lv_myocardium").t1),
        float(props.of("lv_myocardium").t2),
        4e-3,
        2e-3,
        math.radians(45),
        float(props.of("lv_myocardium").pd),
    )
    np.testing.assert_allclose(float(myo["abs_signal"]), expected, rtol=1e-4)


def test_signal_command_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "sig"
    assert main(["signal", "--out", str(out)]) == 0
    assert main(["signal", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["signal", "--out", str(out), "--force"]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--te", "5"], "--te must lie in"),
        (["--tr", "-1"], "--tr must be > 0"),
        (["--flip", "200"], "--flip must lie in"),
    ],
)
def test_signal_command_rejects_bad_sequence(tmp_path, capsys, args, message):
    assert main(["signal", "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err


def test_help_is_useful(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "signal" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["signal", "--help"])
    text = capsys.readouterr().out
    assert "--flip" in text and "degrees" in text and "--out" in text
