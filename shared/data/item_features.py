"""Public item features (`model.item_features`): a fixed item-factor matrix that no client's data ever changes.

Two sources: `genres`, the genre flags that come with the built-in MovieLens datasets (ml-100k's u.item, ml-1m's
movies.dat, ml-latest-small's movies.csv: public catalogue metadata, not anyone's ratings), or a CSV file
`item,f1,f2,...` with a header row (the first column is the item id as in the ratings, the others numbers).
Each item's row is scaled to unit L2 norm (an item with no feature, or missing from the file, gets a zero row:
its predictions use its bias alone). The rows are in the order of `item_ids` (the run's item coding).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fedrec.shared.data import datasets
from fedrec.shared.errors import ConfigError

GENRES = "genres"
GENRE_DATASETS = ("ml-100k", "ml-1m", "ml-latest-small")


def _genre_names(dataset: str, folder: Path) -> dict[str, list[str]]:
    """{item id: its genre names} from a built-in MovieLens dataset's item file."""
    if dataset == "ml-100k":
        names = [line.split("|")[0] for line in (folder / "u.genre").read_text(encoding="latin-1").splitlines() if line]
        out = {}
        for line in (folder / "u.item").read_text(encoding="latin-1").splitlines():
            fields = line.split("|")
            if len(fields) >= 5 + len(names):
                out[fields[0]] = [name for name, flag in zip(names, fields[5:5 + len(names)]) if flag.strip() == "1"]
        return out
    if dataset == "ml-1m":
        rows = (line.split("::") for line in (folder / "movies.dat").read_text(encoding="latin-1").splitlines() if line)
        return {row[0]: row[2].split("|") for row in rows if len(row) == 3}
    if dataset == "ml-latest-small":
        with open(folder / "movies.csv", encoding="utf-8", newline="") as handle:
            return {row["movieId"]: row["genres"].split("|") for row in csv.DictReader(handle)}
    raise AssertionError(dataset)  # genre_matrix checked the name


def genre_matrix(dataset: str, data_dir: Path | None, item_ids) -> np.ndarray:
    """0/1 genre flags (n_items x genres, the genres in their sorted order) of a built-in dataset's items."""
    if dataset not in GENRE_DATASETS:
        raise ConfigError(f"model.item_features = \"genres\" needs a built-in MovieLens dataset "
                          f"({', '.join(GENRE_DATASETS)}), not {dataset!r}; give a CSV file of item features instead")
    folder = datasets.fetch(dataset, data_dir).parent  # verified (and downloaded if missing), as the ratings are
    genres = _genre_names(dataset, folder)
    names = sorted({name for values in genres.values() for name in values})
    column = {name: j for j, name in enumerate(names)}
    flags = np.zeros((len(item_ids), len(names)), dtype=np.float64)
    for row, item in enumerate(item_ids):
        for name in genres.get(str(item), ()):
            flags[row, column[name]] = 1.0
    return flags


def csv_matrix(path: Path, item_ids) -> np.ndarray:
    """Features of `item_ids` from a CSV `item,f1,...` with a header (items not in it: zero rows)."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise ConfigError(f"cannot read the item features {path}: {exc.strerror}") from None
    if len(rows) < 2 or len(rows[0]) < 2:
        raise ConfigError(f"the item features {path} need a header row `item,f1,...` and at least one item row")
    width = len(rows[0]) - 1
    table: dict[str, np.ndarray] = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != width + 1:
            raise ConfigError(f"{path}, line {number}: {len(row)} fields, the header has {width + 1}")
        try:
            values = np.array([float(value) for value in row[1:]])
        except ValueError:
            raise ConfigError(f"{path}, line {number}: a feature is not a number") from None
        if not np.isfinite(values).all():
            raise ConfigError(f"{path}, line {number}: a feature is NaN or infinite")
        if row[0] in table:
            raise ConfigError(f"{path}, line {number}: item {row[0]!r} appears twice")
        table[row[0]] = values
    zero = np.zeros(width)
    return np.stack([table.get(str(item), zero) for item in item_ids]) if len(item_ids) else np.zeros((0, width))


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix, dtype=np.float64), where=norms > 0)


def load_item_features(source: str, dataset: str | None, data_dir: Path | None, item_ids) -> np.ndarray:
    """The fixed item-factor matrix (float32, unit rows) named by `model.item_features`, rows in `item_ids` order."""
    raw = genre_matrix(dataset, data_dir, item_ids) if source == GENRES else csv_matrix(Path(source), item_ids)
    return unit_rows(raw).astype(np.float32)


def features_for(config, item_ids) -> np.ndarray | None:
    """`config.model.item_features` for these items (None when unset), checked against `model.factors`."""
    source = config.model.item_features
    if source is None:
        return None
    features = load_item_features(source, config.data.dataset, config.data.data_dir, item_ids)
    if features.shape[1] != config.model.factors:
        raise ConfigError(f"model.item_features = {source!r} has {features.shape[1]} columns: set "
                          f"model.factors = {features.shape[1]} (--factors {features.shape[1]})")
    return features
