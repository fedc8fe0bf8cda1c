"""Public image sets the shipped models were trained on: what they are, their licences and how to cite them.

A card names a training set by its folder name or Hub id (``sources.display_name``); for the sets below it
also gives the licence and the citation. A model's licence follows the most restrictive of its training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    title: str
    license: str  # Hub licence id ("other" where the data has no standard licence)
    license_text: str  # the terms in words
    citation: str
    url: str
    cautions: tuple[str, ...] = ()  # what a model trained on this set inherits from it, for the card


KNOWN_DATASETS = {
    "histopathology": DatasetInfo(
        "LC25000 lung and colon histopathology tiles (H&E)",
        "other",
        "released by its authors for research use; no standard licence",
        "Borkowski AA, Bui MM, Thomas LB, Wilson CP, DeLand LA, Mastorides SM. Lung and Colon Cancer "
        "Histopathological Image Dataset (LC25000). arXiv:1912.12142, 2019.",
        "https://github.com/tampapath/lung_colon_image_set",
    ),
    "histopathology_glas": DatasetInfo(
        "GlaS colon gland H&E fields (Warwick; 20x objective, about 0.62 µm per pixel), cut into tiles of the "
        "model's scale",
        "other",
        "released for research use with the GlaS challenge; no standard licence",
        "Sirinukunwattana K, Pluim JPW, Chen H, et al. Gland segmentation in colon histology images: The GlaS "
        "challenge contest. Med Image Anal 35, 489-502 (2017).",
        "https://doi.org/10.1016/j.media.2016.08.002",
        (
            (
                "GlaS holds 133 fields from 13 patients here; its test split is 28 fields from 2 patients, so "
                "figures on it are close to anecdotes however narrow an interval looks."
            ),
            (
                "A tile carries its field's label: a tile of an adenocarcinoma field can show benign glands, so "
                "tile-level sensitivity on GlaS understates what a field-level reading gets."
            ),
        ),
    ),
    "dermoscopy": DatasetInfo(
        "ISIC Archive dermoscopy images",
        "cc-by-nc-4.0",
        "ISIC image licences: CC-0, CC-BY or CC-BY-NC per image",
        "International Skin Imaging Collaboration (ISIC) Archive, https://www.isic-archive.com.",
        "https://www.isic-archive.com",
    ),
    "dermoscopy_multiclass": DatasetInfo(
        "HAM10000 dermoscopy images",
        "cc-by-nc-sa-4.0",
        "CC BY-NC-SA 4.0",
        "Tschandl P, Rosendahl C, Kittler H. The HAM10000 dataset, a large collection of multi-source dermatoscopic "
        "images of common pigmented skin lesions. Sci Data 5, 180161 (2018).",
        "https://doi.org/10.7910/DVN/DBW86T",
    ),
    "ultrasound": DatasetInfo(
        "BUSI breast ultrasound images",
        "cc-by-4.0",
        "CC BY 4.0",
        "Al-Dhabyani W, Gomaa M, Khaled H, Fahmy A. Dataset of breast ultrasound images. Data in Brief 28, "
        "104863 (2020).",
        "https://doi.org/10.1016/j.dib.2019.104863",
    ),
    "mammography": DatasetInfo(
        "RSNA screening mammograms (CC and MLO views), as re-released on Kaggle (hayder17, a Roboflow export)",
        "other",
        "Database Contents License (DbCL) 1.0 for the release; the upstream RSNA screening data is for research use",
        "Carr C, Kitamura F, Kalpathy-Cramer J, et al. RSNA Screening Mammography Breast Cancer Detection. Kaggle, "
        "2022. Re-released as hayder17/breast-cancer-detection (Kaggle).",
        "https://www.kaggle.com/competitions/rsna-breast-cancer-detection",
        (
            (
                "The release stretched every mammogram to a 384 x 384 square: proportions, and detail finer than "
                "about half a millimetre, are not those of the original images."
            ),
            (
                "Labels belong to the whole view (a view of a breast with cancer, or of a cancer-free exam), not to "
                "a marked lesion; there are no biopsy-proven benign lesions among the benign views."
            ),
            (
                "Digital screening from one screening population; film, tomosynthesis, other vendors and other "
                "populations are unmeasured."
            ),
            (
                "In this release the two classes differ in how images were processed and stored (brightness, "
                "inverted grey levels): a model may learn that as well as the breast."
            ),
        ),
    ),
}
# Most restrictive first: a model trained on several sets takes the first of their licences in this order.
_RESTRICTIVENESS = ["other", "cc-by-nc-sa-4.0", "cc-by-nc-4.0", "cc-by-sa-4.0", "cc-by-4.0", "cc0-1.0"]


def known(names: Sequence[str]) -> list[DatasetInfo]:
    """The entries of ``KNOWN_DATASETS`` among ``names``, in order."""
    return [KNOWN_DATASETS[n] for n in names if n in KNOWN_DATASETS]


def data_license(names: Sequence[str]) -> str | None:
    """The licence a model trained on the sets ``names`` inherits, where every set is known; None otherwise."""
    infos = known(names)
    if not infos or len(infos) != len(names):
        return None
    rank = {lic: i for i, lic in enumerate(_RESTRICTIVENESS)}
    return min((i.license for i in infos), key=lambda lic: rank.get(lic, 0))
