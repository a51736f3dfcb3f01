"""Build a labelled, split dataset of bin photos: ``<out>/<split>/<count>/<id>.jpg`` + ``manifest.json``.

Three sources go through one path (discover labelled samples -> stratified split -> fetch, verify
and write concurrently -> manifest), so a model trained on a downloaded copy of ABID (a count
folder on disk) was prepared exactly as one trained on the public bucket:

* the ABID public bucket (``aft-vbi-pds``, unsigned requests): a listing such as
  ``file_list.json`` (``{"1": ["metadata/00001.json", ...]}``) or plain ids; the label is the
  metadata's ``EXPECTED_QUANTITY``;
* a local folder of images + ABID metadata JSONs (``images/<id>.jpg``, ``metadata/<id>.json``);
* a local folder of count classes (``images/<count>/<id>.jpg`` + optional ``labels.csv``).

The split is decided on the labelled samples before any image is fetched, so it does not move
when a download fails or a run resumes. Images that are missing or cannot be decoded are
skipped and listed under ``rejected`` in the manifest and the summary, never dropped silently.

Run ``python -m training.data --help``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bincount.image_formats import IMAGE_SUFFIXES
from PIL import Image

from common.files import write_atomically
from training.progress import progress

SPLITS = ("train", "valid", "test")
#: SageMaker channel name for each split folder (``SM_CHANNEL_<NAME>``).
CHANNELS = {"train": "train", "valid": "validation", "test": "test"}
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "bincount-split/1"
#: A folder of reviewed photos (``bincount export-labels``, cli/commands/export_labels.py) holds
#: ``sources.json`` whose format starts with this (not ``manifest.json``, which marks a prepared split).
REVIEWED_MANIFEST = "sources.json"
REVIEWED_FORMAT = "bincount-labels/"
#: Reviewed photos go to train / valid / test by a hash of the photo; their test split is the
#: gate set (``training.promotion.gate``), large enough for a paired test on a few hundred reviews.
REVIEWED_FRACTIONS = (0.65, 0.10, 0.25)

ABID_BUCKET = "aft-vbi-pds"
ABID_REGION = "us-east-1"
ABID_IMAGE_PREFIX = "bin-images/"
ABID_METADATA_PREFIX = "metadata/"


class SampleUnavailable(Exception):
    """The photo (or its label) of one sample cannot be obtained; ``reason`` goes to the manifest."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Sample:
    """One labelled photo before it is fetched; ``source`` is a local path or an ``s3://`` URI."""

    id: str
    count: int
    source: str


@dataclass(frozen=True)
class Rejected:
    id: str
    source: str
    reason: str
    detail: str = ""


@dataclass
class Manifest:
    """What a prepared dataset holds; written as ``<out>/manifest.json``."""

    source: str
    seed: int
    fractions: tuple[float, float, float]
    samples: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    format: str = MANIFEST_FORMAT
    created: str = ""
    split_rule: str = "stratified"  # or "hash": reviewed photos, stable by photo across retrains

    def split_counts(self) -> dict[str, dict[str, int]]:
        table: dict[str, Counter[int]] = {split: Counter() for split in SPLITS}
        for sample in self.samples:
            table[sample["split"]][int(sample["count"])] += 1
        return {split: {str(k): v for k, v in sorted(c.items())} for split, c in table.items()}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fractions"] = list(self.fractions)
        data["split_counts"] = self.split_counts()
        data["rejected_reasons"] = dict(Counter(r["reason"] for r in self.rejected))
        return data

    def save(self, path: Path) -> None:
        write_atomically(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{path} is not a {MANIFEST_FORMAT} manifest")
        return cls(
            source=data["source"],
            seed=int(data["seed"]),
            fractions=tuple(data["fractions"]),
            samples=data["samples"],
            rejected=data["rejected"],
            created=data.get("created", ""),
            split_rule=data.get("split_rule", "stratified"),
        )

    def summary(self) -> str:
        lines = [f"dataset from {self.source}: {len(self.samples)} photos, {len(self.rejected)} rejected"]
        for split, counts in self.split_counts().items():
            total = sum(counts.values())
            lines.append(f"  {split:5s} {total:5d}  " + "  ".join(f"{k}:{v}" for k, v in counts.items()))
        if self.rejected:
            reasons = Counter(r["reason"] for r in self.rejected)
            lines.append("  rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
            for item in self.rejected[:10]:
                lines.append(
                    f"    {item['id']} ({item['source']}): {item['reason']} {item['detail']}".rstrip()
                )
            if len(self.rejected) > 10:
                lines.append(f"    ... {len(self.rejected) - 10} more in the manifest")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Reading photos and labels
# --------------------------------------------------------------------------------------------


class Reader(Protocol):
    def read(self, source: str) -> bytes:
        """The bytes at ``source``; raises SampleUnavailable when it does not exist."""
        ...


class LocalReader:
    def read(self, source: str) -> bytes:
        try:
            return Path(source).read_bytes()
        except FileNotFoundError as exc:
            raise SampleUnavailable("missing_image", str(exc)) from exc
        except OSError as exc:
            raise SampleUnavailable("unreadable_image", str(exc)) from exc


@dataclass
class AbidBucket:
    """The public ABID bucket (or any bucket laid out like it), read with unsigned requests."""

    bucket: str = ABID_BUCKET
    image_prefix: str = ABID_IMAGE_PREFIX
    metadata_prefix: str = ABID_METADATA_PREFIX
    region: str = ABID_REGION
    endpoint_url: str | None = None
    client: Any = None

    def __post_init__(self) -> None:
        if self.client is None:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config

            config = Config(signature_version=UNSIGNED, retries={"max_attempts": 5, "mode": "adaptive"})
            config = config.merge(Config(max_pool_connections=64))
            self.client = boto3.client(
                "s3", region_name=self.region, endpoint_url=self.endpoint_url, config=config
            )

    def image_uri(self, sample_id: str) -> str:
        return f"s3://{self.bucket}/{self.image_prefix}{sample_id}.jpg"

    def _get(self, key: str, missing_reason: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise SampleUnavailable(missing_reason, f"s3://{self.bucket}/{key}") from exc
            raise SampleUnavailable("download_failed", f"s3://{self.bucket}/{key}: {code}") from exc

    def read(self, source: str) -> bytes:
        prefix = f"s3://{self.bucket}/"
        if not source.startswith(prefix):
            raise ValueError(f"{source} is not in bucket {self.bucket}")
        return self._get(source[len(prefix) :], "missing_image")

    def expected_quantity(self, sample_id: str) -> int:
        body = self._get(f"{self.metadata_prefix}{sample_id}.json", "missing_metadata")
        return expected_quantity(body, f"s3://{self.bucket}/{self.metadata_prefix}{sample_id}.json")


def expected_quantity(body: bytes | str, where: str) -> int:
    """The label of an ABID photo: ``EXPECTED_QUANTITY`` of its metadata JSON."""
    try:
        value = json.loads(body)["EXPECTED_QUANTITY"]
        count = int(value)
    except (ValueError, KeyError, TypeError) as exc:
        raise SampleUnavailable("bad_metadata", f"{where}: {exc}") from exc
    if count < 0:
        raise SampleUnavailable("bad_metadata", f"{where}: negative EXPECTED_QUANTITY")
    return count


def sample_id_from_path(path: str) -> str:
    """``data/metadata/00012.json`` or ``bin-images/00012.jpg`` -> ``00012`` (padding is significant)."""
    return Path(path).stem


def ids_from_listing(path: Path) -> dict[str, int | None]:
    """Ids (with the class the listing claims, if any) from ``file_list.json``, a JSON list or text lines."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict):
            return {sample_id_from_path(p): int(k) for k, paths in data.items() for p in paths}
        return {sample_id_from_path(str(p)): None for p in data}
    return {sample_id_from_path(line.strip()): None for line in text.splitlines() if line.strip()}


def verify_image(data: bytes) -> tuple[bytes, str | None]:
    """JPEG bytes of a decodable photo (re-encoding other formats), or the reason it is rejected."""
    if not data:
        return b"", "empty_image"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a full decode: truncated files fail here, not at training time
            if min(image.size) < 16:
                return b"", f"too_small {image.size}"
            if image.format == "JPEG" and image.mode in ("RGB", "L"):
                return data, None
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=95)
            return buffer.getvalue(), None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return b"", f"corrupt_image {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------
# Discovery: labelled samples from each kind of source
# --------------------------------------------------------------------------------------------


def samples_from_count_folder(root: Path) -> tuple[list[Sample], list[Rejected]]:
    """``<root>/images/<count>/*.jpg`` (or ``<root>/<count>/*.jpg``); labels from ``labels.csv`` if any."""
    samples: list[Sample] = []
    rejected: list[Rejected] = []
    labels = root / "labels.csv"
    if labels.is_file():
        with labels.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                source = str(root / row["image"])
                try:
                    count = int(row["count"])
                except (KeyError, ValueError):
                    rejected.append(Rejected(sample_id_from_path(row.get("image", "?")), source, "bad_label"))
                    continue
                samples.append(Sample(sample_id_from_path(row["image"]), count, source))
        return samples, rejected
    base = root / "images" if (root / "images").is_dir() else root
    for folder in sorted(base.iterdir()):
        if folder.is_dir() and folder.name.isdigit():
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    samples.append(Sample(path.stem, int(folder.name), str(path)))
    return samples, rejected


def samples_from_metadata_folder(root: Path) -> tuple[list[Sample], list[Rejected]]:
    """Photos in ``<root>/images`` (or ``<root>``) labelled by ``<root>/metadata/<id>.json``."""
    image_dir = root / "images" if (root / "images").is_dir() else root
    images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    metadata = {p.stem: p for p in sorted((root / "metadata").glob("*.json"))}
    samples: list[Sample] = []
    rejected: list[Rejected] = []
    for sample_id, path in images.items():
        if sample_id not in metadata:
            rejected.append(Rejected(sample_id, str(path), "missing_metadata"))
            continue
        try:
            count = expected_quantity(metadata[sample_id].read_bytes(), str(metadata[sample_id]))
        except SampleUnavailable as exc:
            rejected.append(Rejected(sample_id, str(path), exc.reason, exc.detail))
            continue
        samples.append(Sample(sample_id, count, str(path)))
    for sample_id in sorted(set(metadata) - set(images)):
        rejected.append(Rejected(sample_id, str(metadata[sample_id]), "missing_image"))
    return samples, rejected


def samples_from_bucket(
    bucket: AbidBucket, ids: Mapping[str, int | None], workers: int
) -> tuple[list[Sample], list[Rejected]]:
    """Label every id from its metadata in the bucket, concurrently."""
    samples: list[Sample] = []
    rejected: list[Rejected] = []

    def label(sample_id: str) -> Sample | Rejected:
        try:
            return Sample(sample_id, bucket.expected_quantity(sample_id), bucket.image_uri(sample_id))
        except SampleUnavailable as exc:
            return Rejected(sample_id, bucket.image_uri(sample_id), exc.reason, exc.detail)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for result in progress(pool.map(label, sorted(ids)), total=len(ids), desc="metadata", unit="file"):
            if isinstance(result, Sample):
                samples.append(result)
            else:
                rejected.append(result)
    mismatches = [s.id for s in samples if ids.get(s.id) is not None and ids[s.id] != s.count]
    if mismatches:
        print(
            f"note: {len(mismatches)} ids have an EXPECTED_QUANTITY other than the listing's class "
            f"(e.g. {mismatches[:5]}); the metadata wins",
            flush=True,
        )
    return samples, rejected


def discover_local(root: Path) -> tuple[list[Sample], list[Rejected]]:
    """A metadata folder if ``<root>/metadata`` exists, a count-class folder otherwise."""
    if (root / "metadata").is_dir() and not (root / "labels.csv").is_file():
        return samples_from_metadata_folder(root)
    return samples_from_count_folder(root)


# --------------------------------------------------------------------------------------------
# Split and materialise
# --------------------------------------------------------------------------------------------


def split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """How many of ``n`` photos of one class go to (train, valid, test).

    Rounded half up (not banker's rounding) so the sizes are easy to predict; a class of three or
    more photos puts at least one in valid and test, and train always keeps at least one.
    """
    _, f_valid, f_test = fractions
    n_valid = int(n * f_valid + 0.5)
    n_test = int(n * f_test + 0.5)
    if n >= 3:
        n_valid, n_test = max(1, n_valid), max(1, n_test)
    elif n == 2:
        n_valid, n_test = 1, 0
    else:
        n_valid, n_test = 0, 0
    while n - n_valid - n_test < 1 and (n_valid or n_test):
        if n_test >= n_valid:
            n_test -= 1
        else:
            n_valid -= 1
    return n - n_valid - n_test, n_valid, n_test


def stratified_split(
    samples: Iterable[Sample], seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, list[Sample]]:
    """Split each count class separately, deterministically for a seed whatever the input order."""
    if abs(sum(fractions) - 1.0) > 1e-6 or len(fractions) != 3:
        raise ValueError(f"fractions must be three numbers summing to 1, got {fractions}")
    by_count: dict[int, list[Sample]] = {}
    for sample in samples:
        by_count.setdefault(sample.count, []).append(sample)
    out: dict[str, list[Sample]] = {split: [] for split in SPLITS}
    for count, group in sorted(by_count.items()):
        group = sorted(group, key=lambda s: s.id)
        random.Random(f"{seed}:{count}").shuffle(group)
        n_train, n_valid, _ = split_sizes(len(group), fractions)
        out["train"] += group[:n_train]
        out["valid"] += group[n_train : n_train + n_valid]
        out["test"] += group[n_train + n_valid :]
    return out


def hash_fraction(key: str) -> float:
    """A photo's fixed place in [0, 1): the first 60 bits of the SHA-256 of its id."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:15], 16) / 16**15


def hash_split(
    samples: Iterable[Sample], fractions: Sequence[float] = REVIEWED_FRACTIONS
) -> dict[str, list[Sample]]:
    """Split by a hash of each photo's id: a photo stays in its split however many photos join.

    The stratified split reshuffles a class when photos are added to it, which would move a
    reviewed photo from the gate set into training on the next retrain; this one never does.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or len(fractions) != 3:
        raise ValueError(f"fractions must be three numbers summing to 1, got {fractions}")
    out: dict[str, list[Sample]] = {split: [] for split in SPLITS}
    for sample in sorted(samples, key=lambda s: s.id):
        place = hash_fraction(sample.id)
        split = (
            "train" if place < fractions[0] else "valid" if place < fractions[0] + fractions[1] else "test"
        )
        out[split].append(sample)
    return out


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dedupe(samples: list[Sample], rejected: list[Rejected]) -> list[Sample]:
    seen: dict[str, Sample] = {}
    for sample in samples:
        if sample.id in seen:
            rejected.append(
                Rejected(sample.id, sample.source, "duplicate_id", f"also {seen[sample.id].source}")
            )
        else:
            seen[sample.id] = sample
    return list(seen.values())


def prepare(
    samples: list[Sample],
    rejected: list[Rejected],
    reader: Reader,
    out: Path,
    source: str,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    workers: int = 16,
    split_rule: str = "stratified",
) -> Manifest:
    """Split, fetch, verify and write every sample; resume by skipping files already verified.

    ``split_rule`` "stratified" splits each count class at random for ``seed``
    (:func:`stratified_split`); "hash" puts each photo where the hash of its id says
    (:func:`hash_split`), whatever the other photos are.
    """
    out.mkdir(parents=True, exist_ok=True)
    rejected = list(rejected)
    samples = _dedupe(samples, rejected)
    previous = _previous_hashes(out / MANIFEST)
    splits = (
        hash_split(samples, fractions) if split_rule == "hash" else stratified_split(samples, seed, fractions)
    )
    assignments = [(split, s) for split, group in splits.items() for s in group]

    def materialise(item: tuple[str, Sample]) -> dict[str, Any] | Rejected:
        return _materialise(item[0], item[1], out, previous, reader)

    records: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for result in progress(
            pool.map(materialise, assignments), total=len(assignments), desc="images", unit="img"
        ):
            if isinstance(result, Rejected):
                rejected.append(result)
            else:
                records.append(result)

    _remove_stale(out, {r["path"] for r in records})
    records.sort(key=lambda r: (SPLITS.index(r["split"]), r["count"], r["id"]))
    manifest = Manifest(
        source=source,
        seed=seed,
        fractions=(float(fractions[0]), float(fractions[1]), float(fractions[2])),
        samples=records,
        rejected=[asdict(r) for r in sorted(rejected, key=lambda r: r.id)],
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        split_rule=split_rule,
    )
    manifest.save(out / MANIFEST)
    return manifest


def _previous_hashes(manifest_path: Path) -> dict[str, str]:
    """sha256 of every photo an earlier run of ``prepare`` wrote, by relative path (for resuming)."""
    if not manifest_path.is_file():
        return {}
    try:
        return {s["path"]: s["sha256"] for s in Manifest.load(manifest_path).samples}
    except (ValueError, KeyError, json.JSONDecodeError):
        return {}


def _materialise(
    split: str, sample: Sample, out: Path, previous: Mapping[str, str], reader: Reader
) -> dict[str, Any] | Rejected:
    """Fetch, verify and write one photo to ``<split>/<count>/<id>.jpg``, or say why it cannot be."""
    relative = f"{split}/{sample.count}/{sample.id}.jpg"
    target = out / relative
    if target.is_file():
        existing = target.read_bytes()
        digest = sha256_bytes(existing)
        if previous.get(relative) == digest or verify_image(existing)[1] is None:
            return {**asdict(sample), "split": split, "path": relative, "sha256": digest}
    try:
        data, problem = verify_image(reader.read(sample.source))
    except SampleUnavailable as exc:
        return Rejected(sample.id, sample.source, exc.reason, exc.detail)
    if problem is not None:
        reason, _, detail = problem.partition(" ")
        return Rejected(sample.id, sample.source, reason, detail)
    write_atomically(target, data)
    return {**asdict(sample), "split": split, "path": relative, "sha256": sha256_bytes(data)}


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Delete photos of an earlier split (other seed or source): they would leak across splits."""
    removed = 0
    for split in SPLITS:
        for path in (out / split).glob("*/*"):
            if path.as_posix()[len(out.as_posix()) + 1 :] not in keep:
                path.unlink()
                removed += 1
    if removed:
        print(f"removed {removed} photos left over from an earlier, different split", flush=True)


def prepare_local(root: Path, out: Path, seed: int = 0, workers: int = 8) -> Manifest:
    """Data prep for a local folder (count classes or images + metadata)."""
    samples, rejected = discover_local(root)
    if not samples:
        raise ValueError(f"no labelled photos found in {root}")
    return prepare(
        samples, rejected, LocalReader(), out, source=str(root.resolve()), seed=seed, workers=workers
    )


def is_prepared(root: Path) -> bool:
    """A folder already split by :func:`prepare` (its manifest says so)."""
    return _manifest_format(root) == MANIFEST_FORMAT


def is_reviewed(root: Path) -> bool:
    """A folder of reviewed photos written by ``bincount export-labels`` (any version of its format)."""
    return (_manifest_format(root, REVIEWED_MANIFEST) or "").startswith(REVIEWED_FORMAT)


def _manifest_format(root: Path, name: str = MANIFEST) -> str | None:
    try:
        data = json.loads((root / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("format") if isinstance(data, dict) else None


def prepare_source(root: Path, work_dir: Path, seed: int = 0) -> Path:
    """The prepared split folder for one ``--data`` folder, preparing it under ``work_dir`` first.

    A prepared folder is used as is; reviewed photos are split by hash
    (:data:`REVIEWED_FRACTIONS`, their test split is the gate set); any other folder is split
    stratified 80/10/10 with ``seed``. Raises ValueError when the folder holds no labelled photo.
    """
    if is_prepared(root):
        return root
    reviewed = is_reviewed(root)
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    name = f"{root.resolve().name}-{digest}-" + ("reviewed" if reviewed else f"seed{seed}")
    prepared = work_dir / "data" / name
    rule = "by photo hash 65/10/25, test = gate set" if reviewed else f"stratified 80/10/10, seed {seed}"
    print(f"preparing {root} into {prepared} ({rule})", flush=True)
    samples, rejected = discover_local(root)
    if not samples:
        raise ValueError(f"no labelled photos found in {root}")
    manifest = prepare(
        samples,
        rejected,
        LocalReader(),
        prepared,
        source=str(root.resolve()),
        seed=seed,
        fractions=REVIEWED_FRACTIONS if reviewed else DEFAULT_FRACTIONS,
        workers=8,
        split_rule="hash" if reviewed else "stratified",
    )
    print(manifest.summary(), flush=True)
    return prepared


@dataclass(frozen=True)
class DataSource:
    """One ``--data`` folder and how much each of its photos weighs in sampling."""

    path: Path
    weight: float = 1.0


def parse_sources(data: str, weights: str | None = None) -> list[DataSource]:
    """``A,B`` with ``--data-weights 1,3``, or ``A:1,B:3``; a weight is per photo (default 1)."""
    parts = [p.strip() for p in data.split(",") if p.strip()]
    if not parts:
        raise ValueError("--data is empty")
    sources = []
    for part in parts:
        path, sep, weight = part.rpartition(":")
        if sep and _is_number(weight):
            sources.append(DataSource(Path(path), float(weight)))
        else:
            sources.append(DataSource(Path(part)))
    if weights is not None:
        values = [w.strip() for w in weights.split(",")]
        if len(values) != len(sources) or not all(_is_number(v) for v in values):
            raise ValueError(f"--data-weights {weights}: give one number per --data folder ({len(sources)})")
        sources = [DataSource(s.path, float(v)) for s, v in zip(sources, values, strict=True)]
    bad = [s for s in sources if not s.weight > 0]
    if bad:
        raise ValueError(f"data weights must be positive: {bad[0].path} has {bad[0].weight:g}")
    return sources


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def upload_channels(out: Path, uri: str, workers: int = 16, client: Any = None) -> dict[str, str]:
    """Upload the prepared folder to ``s3://bucket/prefix``; returns the S3 URI of each channel.

    ``training`` is the whole prefix (split folders + manifest) for ``SM_CHANNEL_TRAINING``; the
    others are one split each for ``SM_CHANNEL_TRAIN`` / ``_VALIDATION`` / ``_TEST``.
    """
    if not uri.startswith("s3://"):
        raise ValueError(f"--upload needs an s3:// URI, got {uri}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    prefix = prefix.strip("/")
    if client is None:
        import boto3

        client = boto3.client("s3")
    files = [out / MANIFEST] + [p for split in SPLITS for p in sorted((out / split).glob("*/*.jpg"))]

    def upload(path: Path) -> None:
        relative = path.relative_to(out).as_posix()
        client.upload_file(str(path), bucket, f"{prefix}/{relative}" if prefix else relative)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in progress(pool.map(upload, files), total=len(files), desc="upload", unit="file"):
            pass
    base = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    channels = {CHANNELS[split]: f"{base}/{split}/" for split in SPLITS}
    channels["training"] = f"{base}/"
    return channels


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.data",
        description="Prepare a stratified train/valid/test split of bin photos from ABID or a local folder.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--count-folder", type=Path, help="local <dir>/images/<count>/*.jpg (+ labels.csv)")
    source.add_argument(
        "--metadata-folder", type=Path, help="local <dir>/images/*.jpg + <dir>/metadata/*.json"
    )
    source.add_argument(
        "--listing", type=Path, help="ABID listing: file_list.json, a JSON list or one id a line"
    )
    source.add_argument("--ids", nargs="+", help="ABID ids to download (padding matters: 00012 != 12)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (<split>/<count>/<id>.jpg)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fractions", type=float, nargs=3, default=DEFAULT_FRACTIONS, metavar=("TRAIN", "VALID", "TEST")
    )
    parser.add_argument("--workers", type=int, default=16, help="concurrent downloads / reads")
    parser.add_argument(
        "--max-per-class", type=int, default=None, help="listing: keep the first N ids per class"
    )
    parser.add_argument("--bucket", default=ABID_BUCKET)
    parser.add_argument("--image-prefix", default=ABID_IMAGE_PREFIX)
    parser.add_argument("--metadata-prefix", default=ABID_METADATA_PREFIX)
    parser.add_argument("--region", default=ABID_REGION)
    parser.add_argument("--endpoint-url", default=None, help="S3 endpoint (e.g. a local moto server)")
    parser.add_argument(
        "--upload", default=None, metavar="S3_URI", help="upload the channels to s3://bucket/prefix"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    return parser


def _listing_ids(args: argparse.Namespace) -> dict[str, int | None]:
    if args.ids:
        return {sample_id_from_path(i): None for i in args.ids}
    ids = ids_from_listing(args.listing)
    if args.max_per_class:
        kept: dict[str, int | None] = {}
        seen: Counter[int | None] = Counter()
        for sample_id, count in ids.items():
            if seen[count] < args.max_per_class:
                kept[sample_id] = count
                seen[count] += 1
        ids = kept
    return ids


def main(
    argv: Sequence[str] | None = None, bucket_factory: Callable[..., AbidBucket] = AbidBucket
) -> Manifest:
    args = get_args_parser().parse_args(argv)
    reader: Reader
    if args.count_folder or args.metadata_folder:
        root: Path = args.count_folder or args.metadata_folder
        found = samples_from_count_folder(root) if args.count_folder else samples_from_metadata_folder(root)
        samples, rejected = found
        reader, source = LocalReader(), str(root.resolve())
    else:
        bucket = bucket_factory(
            bucket=args.bucket,
            image_prefix=args.image_prefix,
            metadata_prefix=args.metadata_prefix,
            region=args.region,
            endpoint_url=args.endpoint_url,
        )
        samples, rejected = samples_from_bucket(bucket, _listing_ids(args), args.workers)
        reader, source = bucket, f"s3://{args.bucket}/{args.image_prefix}"
    manifest = prepare(samples, rejected, reader, args.out, source, args.seed, args.fractions, args.workers)
    channels = upload_channels(args.out, args.upload, args.workers) if args.upload else {}
    if args.json:
        summary = {
            "out": str(args.out),
            "samples": len(manifest.samples),
            "split_counts": manifest.split_counts(),
            "rejected": manifest.rejected,
            "channels": channels,
        }
        print(json.dumps(summary))
    else:
        print(manifest.summary())
        for name, uri in channels.items():
            print(f"channel {name}: {uri}")
    return manifest


if __name__ == "__main__":
    main(sys.argv[1:])
