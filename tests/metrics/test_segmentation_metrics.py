"""Segmentation metrics against brute-force references written here (explicit
surface enumeration, all-pairs distances), hand-computed surfel areas, the HD95
numbers measured with DeepMind's surface-distance and MONAI (learning-stack notes
section 3.3), invariants and input errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.ndimage as ndi

from jaxsim.metrics import (
    average_surface_distance,
    dice_score,
    hausdorff_distance,
    iou,
    surface_distances,
)
from jaxsim.metrics._edt import squared_edt


# ------------------------------------------------------------------- references
def _inside(mask, idx):
    return all(0 <= i < n for i, n in zip(idx, mask.shape, strict=True)) and bool(
        mask[idx]
    )


def ref_boundary_points(mask, spacing):
    """MONAI's surface: mask voxels with a face neighbour outside (or off-array)."""
    pts = []
    for idx in np.ndindex(mask.shape):
        if not mask[idx]:
            continue
        for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
            nb = list(idx)
            nb[axis] += step
            if not _inside(mask, tuple(nb)):
                pts.append(idx)
                break
    return np.array(pts, float).reshape(-1, mask.ndim) * spacing


def ref_corner_points(mask, spacing):
    """DeepMind's surfels: corners whose 2**ndim surrounding voxels are mixed."""
    pts = []
    for corner in np.ndindex(tuple(n + 1 for n in mask.shape)):
        around = [
            _inside(mask, tuple(c - o for c, o in zip(corner, off, strict=True)))
            for off in itertools.product((0, 1), repeat=mask.ndim)
        ]
        if any(around) and not all(around):
            pts.append(corner)
    return np.array(pts, float).reshape(-1, mask.ndim) * spacing


def ref_directed(a_pts, b_pts):
    d = np.sqrt(((a_pts[:, None, :] - b_pts[None, :, :]) ** 2).sum(-1))
    return d.min(axis=1)


def _ball(shape, center, radius, spacing):
    """Voxels whose centre lies within ``radius`` mm of ``center`` (voxel units)."""
    grid = np.indices(shape).astype(float)
    d2 = sum(((grid[i] - center[i]) * spacing[i]) ** 2 for i in range(len(shape)))
    return (d2 <= radius**2).astype(np.uint8)


def _random_pair(seed, shape):
    rng = np.random.default_rng(seed)
    a = ndi.binary_dilation(rng.random(shape) < 0.03, iterations=1)
    b = ndi.binary_dilation(rng.random(shape) < 0.03, iterations=1)
    a.flat[0] = b.flat[-1] = True  # surfaces touching the array border
    return a.astype(np.uint8), b.astype(np.uint8)


# --------------------------------------------------------------------- overlap
def test_dice_and_iou_hand_computed():
    pred = np.array([[1, 1, 0, 2], [3, 0, 0, 2]])
    target = np.array([[1, 0, 0, 2], [0, 0, 3, 2]])
    # label 1: |P| 2, |T| 1, overlap 1; label 2: 2, 2, 2; label 3: 1, 1, 0
    assert dice_score(pred, target) == {1: 2 / 3, 2: 1.0, 3: 0.0}
    assert iou(pred, target) == {1: 0.5, 2: 1.0, 3: 0.0}
    # a label absent from both: empty_score; label 1 alone
    assert dice_score(pred, target, labels=[1, 4]) == {1: 2 / 3, 4: 1.0}
    assert iou(pred, target, labels=4, empty_score=0.0) == {4: 0.0}


def test_iou_and_dice_relation_on_random_labels():
    rng = np.random.default_rng(0)
    pred, target = rng.integers(0, 4, (6, 7, 8)), rng.integers(0, 4, (6, 7, 8))
    d, j = dice_score(pred, target), iou(pred, target)
    for v in (1, 2, 3):
        assert j[v] == pytest.approx(d[v] / (2 - d[v]))


# ----------------------------------------------------------- distance transform
@pytest.mark.parametrize(
    "shape, spacing", [((40,), (0.7,)), ((9, 31), (2.0, 0.5)), ((5, 6, 7), (3, 1, 2))]
)
def test_numpy_edt_matches_scipy_and_brute_force(shape, spacing):
    rng = np.random.default_rng(1)
    features = rng.random(shape) < 0.05
    features.flat[-1] = True
    got = squared_edt(features, spacing)
    np.testing.assert_allclose(
        got, ndi.distance_transform_edt(~features, sampling=spacing) ** 2, atol=1e-9
    )
    grid = np.indices(shape).reshape(len(shape), -1).T * np.asarray(spacing, float)
    feat = grid[features.ravel()]
    brute = ((grid[:, None] - feat[None]) ** 2).sum(-1).min(1).reshape(shape)
    np.testing.assert_allclose(got, brute, atol=1e-9)


def test_numpy_edt_without_features_is_infinite():
    assert np.all(np.isinf(squared_edt(np.zeros((3, 4), bool), (1.0, 1.0))))


# ------------------------------------------------------ surfaces vs brute force
@pytest.mark.parametrize("convention", ["monai", "deepmind"])
@pytest.mark.parametrize(
    "shape, spacing", [((9, 11), (1.0, 2.5)), ((5, 6, 7), (2.0, 0.7, 1.3))]
)
def test_surface_distances_match_brute_force(convention, shape, spacing):
    a, b = _random_pair(2, shape)
    sp = np.asarray(spacing)
    points = ref_corner_points if convention == "deepmind" else ref_boundary_points
    pa, pb = points(a.astype(bool), sp), points(b.astype(bool), sp)
    s = surface_distances(a, b, spacing=spacing, convention=convention)[1]
    np.testing.assert_allclose(np.sort(s.pred_to_target), np.sort(ref_directed(pa, pb)))
    np.testing.assert_allclose(np.sort(s.target_to_pred), np.sort(ref_directed(pb, pa)))
    if convention == "monai":
        d_ab, d_ba = ref_directed(pa, pb), ref_directed(pb, pa)
        want_hd = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
        want_asd = np.concatenate([d_ab, d_ba]).mean()
        got_hd = hausdorff_distance(a, b, spacing=spacing, convention="monai")[1]
        got_asd = average_surface_distance(a, b, spacing=spacing, convention="monai")
        assert got_hd == pytest.approx(want_hd)
        assert got_asd[1] == pytest.approx(want_asd)
    else:
        # weighted percentile by hand from the returned weights: the first sorted
        # distance whose cumulative weight fraction reaches 0.95
        def directed(d, w):
            order = np.argsort(d)
            cum = np.cumsum(w[order]) / w.sum()
            return d[order][np.argmax(cum >= 0.95)]

        want = max(
            directed(s.pred_to_target, s.pred_weights),
            directed(s.target_to_pred, s.target_weights),
        )
        assert hausdorff_distance(a, b, spacing=spacing)[1] == pytest.approx(want)


def test_max_hausdorff_is_the_same_for_both_weightings_of_the_same_points():
    a, b = _random_pair(3, (6, 7, 8))
    sp = np.array([1.5, 1.0, 0.5])
    pa, pb = (
        ref_corner_points(a.astype(bool), sp),
        ref_corner_points(b.astype(bool), sp),
    )
    want = max(ref_directed(pa, pb).max(), ref_directed(pb, pa).max())
    got = hausdorff_distance(a, b, spacing=tuple(sp), percentile=100)[1]
    assert got == pytest.approx(want)


# ------------------------------------------------------------- surfel weights
def _box_area(n, s):
    """Marching-cubes area of an n0 x n1 x n2 voxel box, spacing s (by hand).

    Flat cells (4 coplanar inside corners): (n_j - 1)(n_k - 1) per face, area
    s_j s_k; edge cells (2 inside corners along axis i): n_i - 1 per edge, 4 edges
    per axis, a strip s_i wide across the diagonal hypot(s_j, s_k) / 2; the 8 box
    corners: one triangle of area sqrt(sum (s_j s_k)^2) / 8 each.
    """
    total = 0.0
    for i in range(3):
        j, k = [a for a in range(3) if a != i]
        total += 2 * (n[j] - 1) * (n[k] - 1) * s[j] * s[k]
        total += 4 * (n[i] - 1) * s[i] * math.hypot(s[j], s[k]) / 2
    total += math.sqrt((s[1] * s[2]) ** 2 + (s[0] * s[2]) ** 2 + (s[0] * s[1]) ** 2)
    return total


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.5, 1.25)])
def test_surfel_areas_of_a_box_and_a_box_shaped_hole(spacing):
    box = np.zeros((8, 9, 10), np.uint8)
    box[1:7, 2:7, 1:9] = 1  # 6 x 5 x 8 voxels
    s = surface_distances(box, box, spacing=spacing)[1]
    assert s.pred_weights.sum() == pytest.approx(_box_area((6, 5, 8), spacing))
    # a cavity's surface cells have 7, 6 and 4 inside corners: same areas
    solid = np.ones((9, 9, 10), np.uint8)
    solid[2:6, 3:6, 2:7] = 0  # 4 x 3 x 5 hole
    hole = surface_distances(solid, solid, spacing=spacing)[1].pred_weights.sum()
    assert hole == pytest.approx(
        _box_area((9, 9, 10), spacing) + _box_area((4, 3, 5), spacing)
    )


def test_single_voxel_is_an_octahedron_and_2d_contours_are_hand_computed():
    one = np.zeros((3, 3, 3), np.uint8)
    one[1, 1, 1] = 1
    s = (1.0, 2.0, 3.0)
    area = surface_distances(one, one, spacing=s)[1].pred_weights.sum()
    assert area == pytest.approx(math.sqrt(6.0**2 + 3.0**2 + 2.0**2))
    # 2D: a 3 x 4 rectangle -> straight runs (2 cells of s1 twice... by axis)
    # plus 4 corner diagonals of length hypot(s0, s1) / 2
    rect = np.zeros((5, 6), np.uint8)
    rect[1:4, 1:5] = 1
    s2 = (1.5, 0.5)
    length = surface_distances(rect, rect, spacing=s2)[1].pred_weights.sum()
    # edges along axis 1: 2 x (4 - 1) cells of s1; along axis 0: 2 x (3 - 1) of s0
    want = 2 * 3 * 0.5 + 2 * 2 * 1.5 + 4 * math.hypot(1.5, 0.5) / 2
    assert length == pytest.approx(want)


# ------------------------------------------- HD95 of the notes (section 3.3)
# Balls in mm (voxel centres within the radius) in a 32^3 array centred at voxel
# (16, 16, 16): the target has radius 12 mm; the prediction is the same ball
# shifted, or a 10 mm ball shifted by (3, 1, 1) voxels. Spacing in array order;
# "shift 1 voxel in z" is along the last axis. Measured there with
# surface-distance (DeepMind) and MONAI 1.6.1 with and without spacing.
NOTES = [
    ((1, 1, 1), (2, 0, 0), 12.0, 2.000, 2.000, 2.000),
    ((1, 1, 1), (3, 1, 1), 10.0, 4.583, 5.000, 5.000),
    ((1, 1, 3), (0, 0, 1), 12.0, 3.000, 3.000, 1.000),
    ((1, 1, 3), (3, 1, 1), 10.0, 5.196, 5.831, 4.123),
]


@pytest.mark.parametrize("spacing, shift, radius, deepmind, monai, monai_unit", NOTES)
def test_hd95_reproduces_the_notes(spacing, shift, radius, deepmind, monai, monai_unit):
    c = np.array([16.0, 16.0, 16.0])
    target = _ball((32, 32, 32), c, 12.0, spacing)
    pred = _ball((32, 32, 32), c + shift, radius, spacing)
    got_dm = hausdorff_distance(pred, target, spacing=spacing)[1]
    got_mo = hausdorff_distance(pred, target, spacing=spacing, convention="monai")[1]
    got_unit = hausdorff_distance(pred, target, spacing=(1, 1, 1), convention="monai")[
        1
    ]
    assert got_dm == pytest.approx(deepmind, abs=5e-4)
    assert got_mo == pytest.approx(monai, abs=5e-4)
    assert got_unit == pytest.approx(monai_unit, abs=5e-4)


# Measured for this suite in a throw-away environment (monai 1.6.1, torch 2.13,
# surface-distance 0.1, scipy 1.17) on the notes' masks and on 2D discs:
# DeepMind's directed mean distances (target->pred, pred->target) and MONAI's
# symmetric ASD and HD95.
MEASURED_3D = [
    ((1, 1, 1), (2.113751429960966, 1.6256589391999634), 2.2093849182128906),
    ((1, 1, 3), (2.2989211028422445, 1.6787864304850861), 2.390514850616455),
]


@pytest.mark.parametrize("spacing, dm_pair, monai_asd", MEASURED_3D)
def test_average_surface_distance_matches_measured(spacing, dm_pair, monai_asd):
    c = np.array([16.0, 16.0, 16.0])
    target = _ball((32, 32, 32), c, 12.0, spacing)
    pred = _ball((32, 32, 32), c + (3, 1, 1), 10.0, spacing)
    s = surface_distances(pred, target, spacing=spacing)[1]
    t2p = np.sum(s.target_to_pred * s.target_weights) / s.target_weights.sum()
    p2t = np.sum(s.pred_to_target * s.pred_weights) / s.pred_weights.sum()
    assert (t2p, p2t) == pytest.approx(dm_pair, rel=1e-9)
    mo = average_surface_distance(pred, target, spacing=spacing, convention="monai")
    assert mo[1] == pytest.approx(monai_asd, rel=1e-6)
    pooled = average_surface_distance(pred, target, spacing=spacing)[1]
    w_t, w_p = s.target_weights.sum(), s.pred_weights.sum()
    assert pooled == pytest.approx((t2p * w_t + p2t * w_p) / (w_t + w_p))


@pytest.mark.parametrize(
    "spacing, deepmind, monai",
    [
        ((1.0, 1.0), 6.082762530298219, 6.324555397033691),
        ((1.0, 2.5), 7.0710678, 6.9854069),
    ],
)
def test_hd95_2d_discs_match_measured(spacing, deepmind, monai):
    target = _ball((48, 48), (24.0, 24.0), 15.0, spacing)
    pred = _ball((48, 48), (27.0, 25.0), 12.0, spacing)
    assert hausdorff_distance(pred, target, spacing=spacing)[1] == pytest.approx(
        deepmind, rel=1e-6
    )
    got = hausdorff_distance(pred, target, spacing=spacing, convention="monai")[1]
    assert got == pytest.approx(monai, rel=1e-6)


# ----------------------------------------------------------------- invariants
@pytest.mark.parametrize("convention", ["deepmind", "monai"])
def test_distances_scale_with_spacing_and_follow_axis_permutations(convention):
    a, b = _random_pair(4, (6, 7, 8))
    sp = (1.0, 2.0, 0.5)
    hd = hausdorff_distance(a, b, spacing=sp, convention=convention)[1]
    asd = average_surface_distance(a, b, spacing=sp, convention=convention)[1]
    scaled = hausdorff_distance(
        a, b, spacing=tuple(3 * s for s in sp), convention=convention
    )[1]
    assert scaled == pytest.approx(3 * hd)
    perm = (2, 0, 1)
    pa, pb = a.transpose(perm), b.transpose(perm)
    psp = tuple(sp[i] for i in perm)
    assert hausdorff_distance(pa, pb, spacing=psp, convention=convention)[
        1
    ] == pytest.approx(hd)
    assert average_surface_distance(pa, pb, spacing=psp, convention=convention)[
        1
    ] == pytest.approx(asd)
    # symmetric in its arguments; 0 for identical masks
    assert hausdorff_distance(b, a, spacing=sp, convention=convention)[
        1
    ] == pytest.approx(hd)
    assert hausdorff_distance(a, a, spacing=sp, convention=convention)[1] == 0.0


def test_per_label_dicts_and_empty_masks():
    pred = np.zeros((6, 6), np.uint8)
    target = np.zeros((6, 6), np.uint8)
    pred[1:3, 1:3] = 1
    target[1:3, 1:3] = 1
    target[4:6, 4:6] = 2  # label 2 missing from the prediction
    hd = hausdorff_distance(pred, target, spacing=(1.0, 1.0), labels=[1, 2, 3])
    assert hd == {1: 0.0, 2: math.inf, 3: 0.0}
    asd = average_surface_distance(pred, target, spacing=(1.0, 1.0), convention="monai")
    assert asd == {1: 0.0, 2: math.inf}
    assert dice_score(pred, target) == {1: 1.0, 2: 0.0}


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda p, t: dice_score(p, t[:, :3]), ValueError, "same shape"),
        (lambda p, t: dice_score(p.astype(float), t), TypeError, "integer label"),
        (lambda p, t: dice_score(p[0], t[0]), ValueError, "2 or 3 axes"),
        (lambda p, t: dice_score(p - 1, t), ValueError, ">= 0"),
        (lambda p, t: dice_score(p, t, labels=[0]), ValueError, "background"),
        (
            lambda p, t: hausdorff_distance(p, t, spacing=(1, 1)),
            ValueError,
            "one value",
        ),
        (lambda p, t: hausdorff_distance(p, t, spacing=(1, 0)), ValueError, "> 0 mm"),
        (lambda p, t: hausdorff_distance(p, t, spacing=1.0), TypeError, "sequence"),
        (
            lambda p, t: hausdorff_distance(p, t, spacing=(1, 1), percentile=101),
            ValueError,
            "percentile",
        ),
        (
            lambda p, t: hausdorff_distance(p, t, spacing=(1, 1), convention="x"),
            ValueError,
            "convention",
        ),
    ],
)
def test_bad_input_is_named(call, error, match):
    p = np.zeros((4, 5), np.int64)
    t = np.zeros((4, 5), np.int64)
    p[1, 1] = t[2, 2] = 1
    if "one value" in match:
        p, t = p[None], t[None]
    with pytest.raises(error, match=match):
        call(p, t)
