"""Tissue classes of the phantom; a label map's value indexes :data:`TISSUES`."""

TISSUES: tuple[str, ...] = (
    "air",  # 0: background (outside the body, and air-filled cavities)
    "lv_blood",
    "rv_blood",
    "lv_myocardium",
    "rv_myocardium",
    "la_blood",
    "ra_blood",
    "aorta",
    "pulmonary_artery",
    "lung",
    "liver",
    "stomach",
    "spleen",
    "bone",  # spine and ribs
    "fat",  # subcutaneous, pericardial and visceral fat
    "muscle",
    "body",  # other soft tissue
)

TISSUE_INDEX: dict[str, int] = {name: i for i, name in enumerate(TISSUES)}
