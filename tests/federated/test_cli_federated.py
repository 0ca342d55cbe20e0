"""``jaxsim federated`` and ``jaxsim split-sites``."""

from __future__ import annotations

import csv

import pytest

from jaxsim.cli import main


def test_help_has_examples(capsys):
    for command in ("federated", "split-sites"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "example" in capsys.readouterr().out


def test_bad_task_settings_stop_before_any_work(site_factory, tmp_path, capsys):
    site = site_factory("A", [1, 2])
    out = str(tmp_path / "r")
    # sim-fl needs rounds after its 3 + 2 generator rounds; direct would run first
    code = main(["federated", "--sites", str(site), "--rounds", "4",
                 "--tasks", "direct", "sim-fl", "--out", out])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "rounds must exceed shape_rounds + material_rounds = 5" in err
    assert not (tmp_path / "r").exists()


def test_missing_site_folder_is_named(tmp_path, capsys):
    code = main(["federated", "--sites", str(tmp_path / "nowhere"), "--rounds", "1",
                 "--out", str(tmp_path / "r")])  # fmt: skip
    assert code == 2 and "nowhere" in capsys.readouterr().err


def test_flower_engine_without_the_extra_says_how_to_install(
    site_factory, tmp_path, capsys, monkeypatch
):
    import jaxsim.federated

    monkeypatch.setattr(jaxsim.federated, "flower_available", lambda: False)
    site = site_factory("A", [1, 2])
    code = main(["federated", "--sites", str(site), "--rounds", "1",
                 "--out", str(tmp_path / "r")])  # fmt: skip
    assert code == 2
    assert "jaxsim-imaging[federated]" in capsys.readouterr().err


def test_split_sites_command(site_factory, tmp_path, capsys):
    src = site_factory("acdc", [2, 30])
    assert main(["split-sites", str(src), "--out", str(tmp_path / "s")]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "DCM", "HCM", "manifest.json"
    ]  # fmt: skip
    assert main(["split-sites", str(src), "--out", str(tmp_path / "s")]) == 2
    assert "manifest" in capsys.readouterr().err


@pytest.mark.integration
def test_federated_command_compares_tasks_per_site(site_factory, tmp_path):
    sites = [site_factory("A", [1, 2]), site_factory("B", [3, 4], seed=3)]
    out = tmp_path / "fed"
    args = ["federated", "--sites", *map(str, sites), "--rounds", "2", "--smoke",
            "--engine", "inprocess", "--local-steps", "2", "--finetune-steps", "1",
            "--spacing", "10", "4", "4", "--no-tta", "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    with open(out / "sites.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["site"], r["method"]) for r in rows] == [
        ("A", "direct"), ("A", "direct+finetune"), ("B", "direct"),
        ("B", "direct+finetune"), ("A", "local"), ("B", "local"),
    ]  # fmt: skip
    assert all(0.0 <= float(r["dice-mean"]) <= 1.0 for r in rows)
    assert (out / "sites.png").stat().st_size > 0
    assert main(args) == 2  # exists: --resume or --force
    assert main([*args, "--resume"]) == 0


def test_sim_fl_settings_from_the_command_line():
    import argparse

    from jaxsim._cli_federated import add_parser, config_from_args
    from jaxsim.federated import FederatedConfig

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    base = ["federated", "--sites", "a", "--out", "o"]
    args = parser.parse_args(base + ["--cpus", "2"])
    assert args.cpus == 2 and not args.centralised_glo
    config = config_from_args(parser.parse_args(base))
    d = FederatedConfig()
    assert (config.enhancer_steps, config.sim_subjects) == (
        d.enhancer_steps, d.sim_subjects
    )  # fmt: skip
    config = config_from_args(parser.parse_args(base + ["--reference"]))
    assert (config.enhancer_steps, config.sim_subjects) == (2000, 100)
    assert config.enhancer_options["ngf"] == 64
    config = config_from_args(
        parser.parse_args(
            base + ["--reference", "--enhancer-steps", "0", "--shape-rounds", "4"]
        )
    )
    assert (config.enhancer_steps, config.shape_rounds) == (0, 4)
