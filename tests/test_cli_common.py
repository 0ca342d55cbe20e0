"""One --spacing syntax for every command: tokens or commas, the same meaning."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from jaxsim._cli_common import parse_spacing, spacing_values
from jaxsim.cli import main


@pytest.mark.parametrize(
    "tokens", [["10", "1.5", "1.25"], ["10,1.5,1.25"], ["10,", "1.5", "1.25"]]
)
def test_both_forms_give_the_same_spacing(tokens):
    assert parse_spacing(tokens) == (10.0, 1.5, 1.25)


@pytest.mark.parametrize(
    "tokens, match",
    [(["1", "2"], "1 or 3 values"), (["a"], "numbers in mm"), (["0,1,1"], "> 0"),
     (["inf"], "finite")],
)  # fmt: skip
def test_bad_spacings_name_the_flag(tokens, match):
    with pytest.raises(ValueError, match=match) as err:
        parse_spacing(tokens, flag="--spacing")
    assert "--spacing" in str(err.value)
    assert spacing_values(["2", "3"]) == [2.0, 3.0]


def test_tag_accepts_both_forms(tmp_path):
    import h5py

    image = np.random.default_rng(0).uniform(size=(2, 16, 12)).astype(np.float32)
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as f:
        f["image"], f["label"] = image, np.zeros(image.shape, np.uint8)
    outs = []
    for i, form in enumerate((["10", "1.5", "1.5"], ["10,1.5,1.5"])):
        out = tmp_path / f"o{i}.nii.gz"
        assert main(["tag", str(path), str(out), "--spacing", *form]) == 0
        outs.append(nib.load(out))
    np.testing.assert_array_equal(outs[0].get_fdata(), outs[1].get_fdata())
    np.testing.assert_array_equal(outs[0].affine, outs[1].affine)
