"""Population designs, the HDF5 database, resume, shards, merge and nnU-Net export."""

from __future__ import annotations

import json

import h5py
import jax
import nibabel as nib
import numpy as np
import pytest

from jaxsim.io import Database, export_nnunet, generate_database, merge_databases
from jaxsim.mr import MRAcquisition, simulate_cine
from jaxsim.phantoms import TISSUE_INDEX
from jaxsim.population import PRESETS, PopulationDesign, parse_shard, simulate_label_set


def test_presets_have_the_documented_sizes():
    seed = PopulationDesign(PRESETS["seed2021"], 0)
    assert (seed.n_subjects, seed.n_contrasts, seed.n_records) == (60, 27, 3240)
    quick = PopulationDesign(PRESETS["quick"], 0)
    assert quick.n_records == 12


def test_shards_partition_the_design(tiny_design):
    for n in (1, 2, 3, 4):
        parts = [tiny_design.label_sets_for_shard(i, n) for i in range(n)]
        assert sorted(sum(parts, [])) == list(range(tiny_design.n_label_sets))
    assert parse_shard("2/5") == (2, 5) and parse_shard(None) == (0, 1)
    for bad in ("5/5", "-1/2", "1/0", "x", "1/2/3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_design_is_deterministic(tiny_design):
    again = PopulationDesign(tiny_design.preset, tiny_design.seed)
    a, b = tiny_design.subjects(), again.subjects()
    np.testing.assert_array_equal(a.edv, b.edv)
    assert float(a.sex[0]) == 0.0 and float(a.sex[1]) == 1.0
    ta, _, sa, _ = tiny_design.contrasts(1)
    tb, _, sb, _ = again.contrasts(1)
    np.testing.assert_array_equal(ta.t1, tb.t1)
    np.testing.assert_array_equal(sa, [40.0, 20.0, 10.0])


def test_database_round_trip_and_records_match_simulate_cine(tiny_design, tiny_db):
    with Database(tiny_db) as db:
        assert db.complete and db.n_records == tiny_design.n_records
        assert db.complete_flags.all()
        rec = db.records()
        r = tiny_design.record_index(1, 1, 2)  # female, ES, third contrast
        image, labels, geometry = db.record(r)
        assert rec["subject"][r] == 1 and rec["phase_index"][r] == 1
        assert rec["label_index"][r] == 3
    # An independent path: simulate_cine with the record's own parameters and key.
    design = tiny_design
    subject = design.subject(1)
    tissue, seq, snr, _ = design.contrasts(1)
    pick = lambda a: a[2]  # noqa: E731
    key = jax.random.fold_in(design.noise_key(3), 2)
    ref = simulate_cine(
        key,
        subject,
        design.geometry(subject),
        cardiac_phases=(design.cardiac_phases(subject)[1],),
        tissue=jax.tree_util.tree_map(pick, tissue),
        sequence=jax.tree_util.tree_map(pick, seq),
        acquisition=MRAcquisition(snr=float(snr[2]), n_coils=2, oversample=1),
    )
    np.testing.assert_allclose(image, ref.image[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(labels, ref.labels[0])
    np.testing.assert_allclose(
        geometry.affine, design.geometry(subject).affine, atol=1e-4
    )
    np.testing.assert_allclose(rec["snr"][r], 10.0)
    np.testing.assert_allclose(rec["t1"][r], tissue.t1[2], rtol=1e-6)


def test_no_overwrite_and_clear_errors(tiny_design, tiny_db, tmp_path):
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_database(tiny_design, tiny_db)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        generate_database(tiny_design, tmp_path / "no" / "x.h5")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a jaxsim population database"):
        Database(foreign)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        Database(junk)
    other = PopulationDesign(tiny_design.preset, tiny_design.seed + 1)
    with pytest.raises(ValueError, match="cannot resume"):
        generate_database(other, tiny_db, resume=True)


def test_interrupted_run_resumes_to_identical_arrays(tiny_design, tiny_db, tmp_path):
    path = tmp_path / "part.h5"
    calls = []

    def stop_after_first(n):
        calls.append(n)
        if len(calls) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_database(tiny_design, path, progress=stop_after_first)
    with Database(path) as db:
        assert not db.complete
        assert db.complete_flags.sum() == tiny_design.n_contrasts
        with pytest.raises(ValueError, match="not complete"):
            db.record(tiny_design.n_records - 1)
    summary = generate_database(tiny_design, path, resume=True)
    assert summary["records_skipped"] == tiny_design.n_contrasts
    with h5py.File(path) as a, h5py.File(tiny_db) as b:
        assert a.attrs["complete"]
        for name in ("images", "labels", "affines", "records/noise_std", "records/t1"):
            np.testing.assert_array_equal(a[name][()], b[name][()])


def test_shards_merge_into_the_full_database(tiny_design, tiny_db, tmp_path):
    shards = []
    for i in range(2):
        shards.append(tmp_path / f"s{i}.h5")
        generate_database(tiny_design, shards[-1], shard=(i, 2))
    with pytest.raises(ValueError, match="lack"):
        merge_databases(shards[:1], tmp_path / "m.h5")
    merged = tmp_path / "merged.h5"
    merge_databases(shards, merged)
    with h5py.File(merged) as a, h5py.File(tiny_db) as b:
        assert a.attrs["complete"] and a.attrs["shard"] == "0/1"
        for name in ("images", "labels", "affines", "records/complete", "records/snr"):
            np.testing.assert_array_equal(a[name][()], b[name][()])
    with pytest.raises(ValueError, match="repeats records"):
        merge_databases([shards[0], shards[0], shards[1]], tmp_path / "x.h5")


def test_label_set_is_independent_of_the_number_of_devices(tiny_design):
    one = simulate_label_set(tiny_design, 0, devices=jax.local_devices()[:1])
    again = simulate_label_set(tiny_design, 0)
    np.testing.assert_array_equal(one.images, again.images)


def test_export_nnunet(tiny_db, tmp_path):
    out = tmp_path / "Dataset501_Tiny"
    summary = export_nnunet(tiny_db, out, acdc_labels=True)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["numTraining"] == summary["cases"] == 12
    assert meta["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    assert meta["file_ending"] == ".nii.gz" and "0" in meta["channel_names"]
    images = sorted((out / "imagesTr").glob("*_0000.nii.gz"))
    labels = sorted((out / "labelsTr").glob("*.nii.gz"))
    assert len(images) == len(labels) == 12
    with Database(tiny_db) as db:
        image, lab, geometry = db.record(5)
    img = nib.load(str(out / "imagesTr" / "jaxsim_00005_0000.nii.gz"))
    np.testing.assert_allclose(img.affine, geometry.affine, atol=1e-4)
    np.testing.assert_allclose(img.get_fdata().transpose(2, 1, 0), image, rtol=1e-6)
    seg = np.asarray(nib.load(str(out / "labelsTr" / "jaxsim_00005.nii.gz")).dataobj)
    seg = seg.transpose(2, 1, 0)
    assert set(np.unique(seg).tolist()) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(seg == 2, lab == TISSUE_INDEX["lv_myocardium"])
    with pytest.raises(FileExistsError, match="dataset.json"):
        export_nnunet(tiny_db, out)
