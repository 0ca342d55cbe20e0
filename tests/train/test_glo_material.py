"""Material GLO training: the closed-form gain, the latent Gaussian, sampling,
configuration checks, and (integration) learning a known material map from
synthetic "real" cines, checkpoint resume and the command line."""

from __future__ import annotations

import json

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsim.cli import main
from jaxsim.labels import ACDC, task_labels
from jaxsim.models import MaterialGLO
from jaxsim.mr import (
    BSSFPSequence,
    MRAcquisition,
    default_tissue_properties,
    material_box,
    material_coordinates,
    sample_material,
    simulate_cine,
    tissue_signals,
)
from jaxsim.phantoms import (
    FIELD_SPECS,
    default_subject,
    end_systolic_phase,
    residual_deformation,
    short_axis_geometry,
)
from jaxsim.train import (
    MaterialCase,
    MaterialGLOConfig,
    fitted_gain,
    latent_gaussian,
    load_material_cases,
    load_material_glo,
    sample_materials,
    train_material_glo,
)
from jaxsim.train._glo_material import _mse_loss


# ------------------------------------------------------------------ unit tests
def test_fitted_gain_recovers_an_affine_map_and_ignores_masked_voxels():
    rng = np.random.default_rng(0)
    sim = rng.uniform(size=(2, 3, 4, 5))
    real = np.stack([2.5 * sim[0] + 0.3, -1.0 * sim[1] + 2.0])
    weight = np.ones_like(sim)
    real[:, 0, 0, 0] = 100.0  # an outlier, masked out
    weight[:, 0, 0, 0] = 0.0
    a, b = fitted_gain(jnp.asarray(sim), jnp.asarray(real), jnp.asarray(weight))
    np.testing.assert_allclose(a, [2.5, -1.0], rtol=1e-5)
    np.testing.assert_allclose(b, [0.3, 2.0], rtol=1e-5, atol=1e-5)


def test_loss_is_one_minus_r_squared():
    rng = np.random.default_rng(1)
    real = jnp.asarray(rng.uniform(size=(2, 2, 4, 4)))
    mask = jnp.ones((2, 4, 4))
    pw = jnp.asarray([1.0, 1.0])
    assert float(_mse_loss(3.0 * real + 1.0, real, mask, pw, 2)) < 1e-10
    constant = jnp.ones_like(real)
    np.testing.assert_allclose(float(_mse_loss(constant, real, mask, pw, 2)), 1.0)
    # against a NumPy least-squares fit on the 2x2-pooled images, phase 0 only
    sim = jnp.asarray(rng.uniform(size=(2, 2, 4, 4)))
    pooled = [
        np.asarray(x).reshape(2, 2, 2, 2, 2, 2).mean(axis=(3, 5)) for x in (sim, real)
    ]
    s, r = pooled[0][0].ravel(), pooled[1][0].ravel()
    design = np.stack([s, np.ones_like(s)], 1)
    residual = r - design @ np.linalg.lstsq(design, r, rcond=None)[0]
    expected = np.sum(residual**2) / np.sum((r - r.mean()) ** 2)
    got = float(_mse_loss(sim, real, mask, jnp.asarray([1.0, 0.0]), 2))
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_latent_gaussian():
    z = np.random.default_rng(2).normal(size=(20, 3))
    mean, cov = latent_gaussian(z)
    np.testing.assert_allclose(mean, z.mean(0))
    np.testing.assert_allclose(cov, np.cov(z.T) + 1e-4 * np.eye(3))
    mean, cov = latent_gaussian(z[:1])  # one code: a proper (ridge) Gaussian
    assert np.all(np.linalg.eigvalsh(cov) > 0)


def test_sample_materials_from_a_model():
    glo = MaterialGLO(latent_dim=4, grid=4, width=8, rngs=nnx.Rngs(0))
    latents = jax.random.normal(jax.random.key(0), (3, 4)) * 0.3
    maps = sample_materials(glo, jax.random.key(1), 5, latents=latents)
    assert maps.shape == (5, 9, 4, 4, 4)
    assert np.all(np.abs(np.asarray(maps)) <= 0.5)
    again = sample_materials(glo, jax.random.key(1), 5, latents=latents)
    np.testing.assert_array_equal(maps, again)
    with pytest.raises(ValueError, match="n must be"):
        sample_materials(glo, jax.random.key(1), 0, latents=latents)
    with pytest.raises(ValueError, match="latents are required"):
        sample_materials(glo, jax.random.key(1), 2)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(steps=-1), "steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(loss_spacing=0.0), "loss_spacing"),
        (dict(feature_weight=-1.0), "feature_weight"),
    ],
)
def test_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        MaterialGLOConfig(**kw)


def test_config_json_round_trip():
    c = MaterialGLOConfig(steps=7, max_log=(0.3, 0.4, 0.4))
    assert MaterialGLOConfig.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_unsafe_bounds_are_rejected_before_training(tmp_path):
    case = MaterialCase(
        "x",
        None,
        None,
        np.zeros((1, 1, 2, 2)),
        np.zeros((1, 1, 2, 2)),
        (0.0,),
        (10.0, 4.0, 4.0),
    )
    with pytest.raises(ValueError, match="T2 must not exceed T1"):
        train_material_glo([case], MaterialGLOConfig(max_log=(0.2, 0.9, 0.9)), tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        train_material_glo([], MaterialGLOConfig(), tmp_path)


def test_load_cases_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_material_cases([tmp_path / "nope.h5"], [tmp_path], spacing=(10, 1, 1))
    (tmp_path / "a.h5").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="report.json"):
        load_material_cases([tmp_path / "a.h5"], [tmp_path], spacing=(10, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        load_material_cases([tmp_path], [tmp_path], spacing=(10, 0, 1))


def test_cli_help_and_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["glo", "material", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "example: jaxsim glo material" in out and "--resume" in out
    assert main(["glo"]) == 2
    args = [
        "glo",
        "material",
        "--real",
        str(tmp_path),
        "--twins",
        str(tmp_path),
        "--spacing",
        "10",
        "1.5",
        "1.5",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main([*args, "--steps", "-1"]) == 2
    assert "--steps must be >= 0" in capsys.readouterr().err
    assert main(args) == 2
    assert "no real HDF5 files" in capsys.readouterr().err


# ------------------------------------------------------------------ integration
SPACING = (10.0, 4.0, 4.0)


def truth_map(g=4):
    i = np.linspace(-1, 1, g)
    x, y, z = np.meshgrid(i, i, i, indexing="ij")
    m = np.zeros((9, g, g, g), np.float32)
    m[0] = -0.3 * z  # blood PD along the long axis
    m[3] = 0.3 * x  # myocardium PD across
    m[4] = 0.4 * y  # myocardium T1
    return m


def synthetic_cases():
    cases = []
    for k, sex in enumerate(("male", "female")):
        s = default_subject(sex)
        g = short_axis_geometry(s, shape=(2, 32, 32), spacing=SPACING)
        phases = (0.0, float(end_systolic_phase(s)))
        r = simulate_cine(
            jax.random.key(0),
            s,
            g,
            cardiac_phases=phases,
            acquisition=MRAcquisition(oversample=1),
            material=jnp.asarray(truth_map()),
            box=material_box(s),
        )
        labels = task_labels(np.asarray(r.labels), ACDC)
        # an arbitrary scanner scale and offset: the loss fits them
        image = 3.0 * np.asarray(r.image) + 0.1
        cases.append(MaterialCase(f"case{k}", s, g, image, labels, phases, SPACING))
    return cases


TINY = dict(
    latent_dim=4,
    grid=4,
    width=8,
    loss_spacing=8.0,
    crop_mm=128.0,
    learning_rate=1e-2,
    latent_learning_rate=5e-2,
)


@pytest.fixture(scope="module")
def cases():
    return synthetic_cases()


def _log_signal_change(tissue_name, maps, case):
    """log|s(p e^m)| - log|s(p)| of one tissue at its voxels (ED)."""
    from jaxsim.labels import TISSUES

    t = TISSUES.index(tissue_name)
    group = 0 if "blood" in tissue_name else 1
    coords = material_coordinates(
        case.subject, case.geometry, material_box(case.subject)
    )[0]
    m = np.asarray(sample_material(jnp.asarray(maps), coords))[
        3 * group : 3 * group + 3
    ]
    tissue, seq = default_tissue_properties(), BSSFPSequence()
    mask = (case.labels[0] == (2 if group else 3)).astype(bool)
    pd, t1, t2 = (np.asarray(getattr(tissue, k))[t] for k in ("pd", "t1", "t2"))
    s = tissue_signals(
        type(tissue)(pd * np.exp(m[0]), t1 * np.exp(m[1]), t2 * np.exp(m[2])), seq
    )
    return np.log(np.abs(np.asarray(s)))[mask]


@pytest.mark.integration
def test_glo_recovers_a_known_material(cases, tmp_path):
    config = MaterialGLOConfig(steps=40, batch_size=2, checkpoint_every=20, **TINY)
    result = train_material_glo(cases, config, tmp_path, progress=False)
    report = result.report
    for c in report["cases"].values():
        assert c["loss_learned"] < 0.2 * c["loss_without_material"]
    assert np.mean(list(report["ks_learned"].values())) < np.mean(
        list(report["ks_without_material"].values())
    )
    glo, latents, _ = load_material_glo(tmp_path)
    learned = np.asarray(glo(latents))
    for i, case in enumerate(cases):
        for tissue in ("lv_myocardium", "lv_blood"):
            a = _log_signal_change(tissue, learned[i], case)
            b = _log_signal_change(tissue, truth_map(), case)
            assert np.corrcoef(a, b)[0, 1] > 0.8, (case.name, tissue)
    assert (tmp_path / "material.png").stat().st_size > 0
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 41
    assert np.all(np.asarray(report["latent_norms"]) <= 1 + 1e-6)
    maps = sample_materials(tmp_path, jax.random.key(0), 3)
    assert maps.shape == (3, 9, 4, 4, 4)


@pytest.mark.slow
def test_resume_reaches_the_uninterrupted_result(cases, tmp_path):
    config = MaterialGLOConfig(steps=4, batch_size=1, checkpoint_every=2, **TINY)
    train_material_glo(cases, config, tmp_path / "a", progress=False)
    train_material_glo(cases, config, tmp_path / "b", progress=False, until=2)
    with pytest.raises(FileExistsError, match="resume"):
        train_material_glo(cases, config, tmp_path / "b", progress=False)
    other = MaterialGLOConfig(**{**config.to_json(), "seed": 1})
    with pytest.raises(ValueError, match="configured differently"):
        train_material_glo(cases, other, tmp_path / "b", resume=True, progress=False)
    train_material_glo(cases, config, tmp_path / "b", resume=True, progress=False)
    ga, za, _ = load_material_glo(tmp_path / "a")
    gb, zb, _ = load_material_glo(tmp_path / "b")
    np.testing.assert_allclose(za, zb, rtol=1e-6, atol=1e-7)
    z = jnp.asarray(za)
    np.testing.assert_allclose(ga(z), gb(z), rtol=1e-6, atol=1e-7)


def _twin_folder(folder, case, names):
    s = case.subject
    d = residual_deformation(s)
    parameters = {
        "subject": {f: np.asarray(getattr(s, f)).tolist() for f in FIELD_SPECS},
        "es_phase": case.phases[1],
        "twin_affine": np.asarray(case.geometry.affine).tolist(),
        "grid_shape": list(case.geometry.shape),
        "deformation": {
            "control": np.asarray(d.control).tolist(),
            "lower_mm": list(d.lower),
            "upper_mm": list(d.upper),
            "max_displacement_mm": d.max_displacement,
            "steps": d.steps,
            "resolution": d.resolution,
        },
    }
    folder.mkdir(parents=True)
    report = {"parameters": parameters, "input": {"labels": names[0], "es": names[1]}}
    (folder / "report.json").write_text(json.dumps(report))


@pytest.mark.slow
def test_cli_end_to_end(cases, tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    twins = []
    for k, case in enumerate(cases):
        names = [f"patient90{k}_frame01.h5", f"patient90{k}_frame09.h5"]
        for p, name in enumerate(names):
            with h5py.File(real / name, "w") as f:
                f["image"] = case.images[p]
                f["label"] = case.labels[p]
        twins.append(tmp_path / f"patient90{k}")
        _twin_folder(twins[-1], case, names)
    loaded = load_material_cases([real], twins, spacing=SPACING)
    assert [c.phases for c in loaded] == [c.phases for c in cases]
    np.testing.assert_array_equal(loaded[1].images, cases[1].images)
    args = [
        "glo",
        "material",
        "--real",
        str(real),
        "--twins",
        *map(str, twins),
        "--spacing",
        "10",
        "4",
        "4",
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "2",
        "--quiet",
    ]
    assert main(args) == 0
    out = tmp_path / "run" / "material"
    for name in ("config.json", "metrics.csv", "report.json", "material.png"):
        assert (out / name).exists()
    assert main(args) == 2  # exists: needs --resume or --force
    assert "--resume" in capsys.readouterr().err
    assert main([*args[:-3], "--steps", "3", "--resume", "--quiet"]) == 0
    assert json.loads((out / "report.json").read_text())["steps"] == 3


def test_feature_loss_of_a_segmenter():
    """Zero for a simulation that is an affine copy of the real image, positive
    otherwise, and differentiable in the simulation."""
    from jaxsim.models import UNet
    from jaxsim.train import Preprocessing
    from jaxsim.train._glo_material import _feature_loss

    model = UNet(2, 1, 4, channels=(4, 8, 8), strides=(2, 2), rngs=nnx.Rngs(0))
    model.eval()
    prep = Preprocessing(shape=(16, 16), spacing=4.0)
    rng = np.random.default_rng(3)
    real = jnp.asarray(rng.uniform(size=(2, 2, 12, 12)), jnp.float32)
    mask = jnp.ones((2, 12, 12))
    pw = jnp.asarray([1.0, 1.0])

    def loss(sim):
        return _feature_loss(model, prep, sim, real, mask, pw, (4.0, 4.0), 2)

    assert float(loss(2.0 * real + 0.5)) < 1e-8
    other = jnp.asarray(rng.uniform(size=real.shape), jnp.float32)
    assert float(loss(other)) > 1e-3
    grad = jax.grad(loss)(other)
    assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).sum()) > 0
    with pytest.raises(ValueError, match="2D UNet"):
        train_material_glo(
            [MaterialCase("x", None, None, np.zeros((1, 1, 2, 2)),
                          np.zeros((1, 1, 2, 2)), (0.0,), SPACING)],
            MaterialGLOConfig(), "unused", segmenter=(object(), prep),
        )  # fmt: skip


@pytest.mark.slow
def test_training_with_a_segmenter_feature_loss(cases, tmp_path):
    from jaxsim.models import UNet
    from jaxsim.train import Preprocessing

    model = UNet(2, 1, 4, channels=(4, 8, 8), strides=(2, 2), rngs=nnx.Rngs(0))
    model.eval()
    segmenter = (model, Preprocessing(shape=(32, 32), spacing=4.0))
    config = MaterialGLOConfig(steps=3, feature_weight=1.0, **TINY)
    result = train_material_glo(cases, config, tmp_path, segmenter=segmenter,
                                progress=False)  # fmt: skip
    assert all(np.isfinite(r["loss"]) for r in result.rows)
    # the loss now includes the feature term: above the pure 1 - R^2 of step 1
    no_features = MaterialGLOConfig(**{**config.to_json(), "feature_weight": 0.0})
    plain = train_material_glo(cases, no_features, tmp_path / "plain", progress=False)
    assert result.rows[0]["loss"] > plain.rows[0]["loss"]
