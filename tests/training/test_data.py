"""Data prep: stratified split, local sources, resume, and the ABID bucket against moto."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from imaging import draw_bin, encode
from moto import mock_aws

from training import data
from training.data import Sample, SampleUnavailable, split_sizes, stratified_split

CLASS_SIZES = {0: 6, 1: 10, 2: 10, 3: 10}


def _jpeg(count: int, seed: int) -> bytes:
    return encode(draw_bin(count, seed, size=(64, 48)))


def _write_count_folder(root: Path, with_labels: bool = True) -> None:
    rows = ["image,count,source"]
    for count, n in CLASS_SIZES.items():
        folder = root / "images" / str(count)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            name = f"{count}{i:04d}"
            (folder / f"{name}.jpg").write_bytes(_jpeg(count, i))
            rows.append(f'images/{count}/{name}.jpg,{count},"generated, for tests"')
    (root / "images" / "2" / "2bad.jpg").write_bytes(_jpeg(2, 99)[:300])  # truncated JPEG
    rows.append("images/2/2bad.jpg,2,x")
    rows.append("images/3/3gone.jpg,3,x")  # listed, but the file does not exist
    if with_labels:
        (root / "labels.csv").write_text("\n".join(rows) + "\n")


def test_split_sizes_keep_rare_classes_in_every_split_and_train_never_empty() -> None:
    assert split_sizes(850, (0.8, 0.1, 0.1)) == (680, 85, 85)
    assert split_sizes(6, (0.8, 0.1, 0.1)) == (4, 1, 1)
    assert split_sizes(2, (0.8, 0.1, 0.1)) == (1, 1, 0)
    assert split_sizes(1, (0.8, 0.1, 0.1)) == (1, 0, 0)
    assert split_sizes(3, (0.8, 0.1, 0.1)) == (1, 1, 1)


def test_stratified_split_is_deterministic_disjoint_and_stratified() -> None:
    samples = [Sample(f"{c}-{i}", c, f"/x/{c}-{i}.jpg") for c, n in CLASS_SIZES.items() for i in range(n)]
    first = stratified_split(samples, seed=7)
    again = stratified_split(list(reversed(samples)), seed=7)
    assert {k: [s.id for s in v] for k, v in first.items()} == {
        k: [s.id for s in v] for k, v in again.items()
    }
    ids = [s.id for group in first.values() for s in group]
    assert len(ids) == len(set(ids)) == len(samples)
    assert Counter(s.count for s in first["train"]) == {0: 4, 1: 8, 2: 8, 3: 8}
    assert Counter(s.count for s in first["valid"]) == {0: 1, 1: 1, 2: 1, 3: 1}
    other = stratified_split(samples, seed=8)
    assert [s.id for s in other["valid"]] != [s.id for s in first["valid"]]


def test_count_folder_prepares_split_tree_and_reports_bad_photos(tmp_path: Path) -> None:
    source = tmp_path / "pool"
    _write_count_folder(source)
    manifest = data.prepare_local(source, tmp_path / "out", seed=0, workers=4)

    assert len(manifest.samples) == sum(CLASS_SIZES.values())
    reasons = {r["id"]: r["reason"] for r in manifest.rejected}
    assert reasons == {"2bad": "corrupt_image", "3gone": "missing_image"}
    for sample in manifest.samples:
        path = tmp_path / "out" / sample["path"]
        assert path.is_file()
        assert sample["path"] == f"{sample['split']}/{sample['count']}/{sample['id']}.jpg"
        assert data.sha256_bytes(path.read_bytes()) == sample["sha256"]
    saved = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert saved["split_counts"]["valid"] == {"0": 1, "1": 1, "2": 1, "3": 1}
    assert saved["rejected_reasons"] == {"corrupt_image": 1, "missing_image": 1}
    assert "rejected: corrupt_image 1, missing_image 1" in manifest.summary()


def test_count_folder_without_labels_csv_uses_folder_names(tmp_path: Path) -> None:
    _write_count_folder(tmp_path / "pool", with_labels=False)
    samples, rejected = data.samples_from_count_folder(tmp_path / "pool")
    assert Counter(s.count for s in samples) == {0: 6, 1: 10, 2: 11, 3: 10}  # 2bad is found, rejected later
    assert rejected == []


class CountingReader(data.LocalReader):
    def __init__(self) -> None:
        self.reads = 0

    def read(self, source: str) -> bytes:
        self.reads += 1
        return super().read(source)


def test_resume_skips_verified_files_and_new_seed_removes_stale_ones(tmp_path: Path) -> None:
    source, out = tmp_path / "pool", tmp_path / "out"
    _write_count_folder(source)
    samples, rejected = data.samples_from_count_folder(source)
    data.prepare(samples, rejected, data.LocalReader(), out, "pool", seed=0, workers=2)

    (out / "manifest.json").unlink()  # an interrupted run: files present, no manifest yet
    reader = CountingReader()
    manifest = data.prepare(samples, rejected, reader, out, "pool", seed=0, workers=2)
    assert reader.reads == 2  # only the two bad ones are tried again
    assert len(manifest.samples) == sum(CLASS_SIZES.values())

    other = data.prepare(samples, rejected, data.LocalReader(), out, "pool", seed=1, workers=2)
    on_disk = {p.relative_to(out).as_posix() for p in out.glob("*/*/*.jpg")}
    assert on_disk == {s["path"] for s in other.samples}


def test_metadata_folder_labels_from_expected_quantity(tmp_path: Path) -> None:
    root = tmp_path / "abid"
    (root / "images").mkdir(parents=True)
    (root / "metadata").mkdir()
    for i, count in enumerate([0, 1, 2, 3]):
        (root / "images" / f"{i:05d}.jpg").write_bytes(_jpeg(count, i))
        (root / "metadata" / f"{i:05d}.json").write_text(json.dumps({"EXPECTED_QUANTITY": count}))
    (root / "images" / "nometa.jpg").write_bytes(_jpeg(1, 5))
    (root / "metadata" / "noimage.json").write_text(json.dumps({"EXPECTED_QUANTITY": 1}))
    samples, rejected = data.samples_from_metadata_folder(root)
    assert {s.id: s.count for s in samples} == {"00000": 0, "00001": 1, "00002": 2, "00003": 3}
    assert {(r.id, r.reason) for r in rejected} == {
        ("nometa", "missing_metadata"),
        ("noimage", "missing_image"),
    }


def test_listing_ids_keep_their_zero_padding(tmp_path: Path) -> None:
    listing = tmp_path / "file_list.json"
    listing.write_text(
        json.dumps({"1": ["data/metadata/00012.json", "metadata/12.json"], "2": ["metadata/7.json"]})
    )
    assert data.ids_from_listing(listing) == {"00012": 1, "12": 1, "7": 2}


@pytest.fixture
def abid_bucket(monkeypatch: pytest.MonkeyPatch):
    """A moto bucket laid out like aft-vbi-pds: 12 good ids, a corrupt image, a missing image and metadata."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=data.ABID_BUCKET)
        # Like the real aft-vbi-pds: anyone may read, which is what lets unsigned requests through.
        public_read = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{data.ABID_BUCKET}/*",
                }
            ],
        }
        s3.put_bucket_policy(Bucket=data.ABID_BUCKET, Policy=json.dumps(public_read))
        for i in range(12):
            count = i % 4
            s3.put_object(Bucket=data.ABID_BUCKET, Key=f"bin-images/{i:05d}.jpg", Body=_jpeg(count, i))
            s3.put_object(
                Bucket=data.ABID_BUCKET,
                Key=f"metadata/{i:05d}.json",
                Body=json.dumps({"EXPECTED_QUANTITY": count}),
            )
        s3.put_object(
            Bucket=data.ABID_BUCKET, Key="bin-images/corrupt.jpg", Body=b"\xff\xd8 not really a jpeg"
        )
        s3.put_object(
            Bucket=data.ABID_BUCKET, Key="metadata/corrupt.json", Body=json.dumps({"EXPECTED_QUANTITY": 1})
        )
        s3.put_object(
            Bucket=data.ABID_BUCKET, Key="metadata/noimage.json", Body=json.dumps({"EXPECTED_QUANTITY": 2})
        )
        s3.put_object(Bucket=data.ABID_BUCKET, Key="bin-images/nometa.jpg", Body=_jpeg(1, 1))
        yield s3


def test_bucket_download_with_unsigned_client_rejects_and_uploads_channels(
    abid_bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = tmp_path / "ids.txt"
    listing.write_text("\n".join([f"{i:05d}" for i in range(12)] + ["corrupt", "noimage", "nometa"]))
    abid_bucket.create_bucket(Bucket="channels")
    manifest = data.main(
        [
            "--listing",
            str(listing),
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "4",
            "--upload",
            "s3://channels/abid",
            "--json",
        ]
    )
    assert len(manifest.samples) == 12
    assert {(r["id"], r["reason"]) for r in manifest.rejected} == {
        ("corrupt", "corrupt_image"),
        ("noimage", "missing_image"),
        ("nometa", "missing_metadata"),
    }
    assert manifest.source == "s3://aft-vbi-pds/bin-images/"
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["channels"]["validation"] == "s3://channels/abid/valid/"
    keys = {o["Key"] for o in abid_bucket.list_objects_v2(Bucket="channels")["Contents"]}
    assert "abid/manifest.json" in keys
    assert {f"abid/{s['path']}" for s in manifest.samples} <= keys


def test_bucket_client_is_unsigned_and_endpoint_configurable() -> None:
    bucket = data.AbidBucket(endpoint_url="http://127.0.0.1:5000", region="us-east-1")
    assert bucket.client.meta.endpoint_url == "http://127.0.0.1:5000"
    from botocore import UNSIGNED

    assert bucket.client.meta.config.signature_version is UNSIGNED


def test_bad_metadata_is_a_reason_not_a_crash() -> None:
    with pytest.raises(SampleUnavailable) as info:
        data.expected_quantity(b"{}", "x.json")
    assert info.value.reason == "bad_metadata"


def test_hash_split_keeps_every_photo_in_its_split_when_photos_join() -> None:
    first = [Sample(f"photo-{i}", i % 4, f"/x/{i}.jpg") for i in range(300)]
    before = {s.id: split for split, group in data.hash_split(first).items() for s in group}
    more = first + [Sample(f"late-{i}", 1, f"/y/{i}.jpg") for i in range(200)]
    after = {s.id: split for split, group in data.hash_split(more).items() for s in group}
    assert all(after[i] == split for i, split in before.items())
    sizes = Counter(before.values())
    assert 0.2 <= sizes["test"] / 300 <= 0.3 and 0.55 <= sizes["train"] / 300 <= 0.75
    # a reviewer correcting the count moves nothing either: the split depends on the id only
    relabelled = [Sample(s.id, 5, s.source) for s in first]
    assert {s.id: split for split, g in data.hash_split(relabelled).items() for s in g} == before


def test_the_stratified_split_keeps_old_photos_where_they_were_when_new_counts_join() -> None:
    old = [Sample(f"{c}-{i}", c, "") for c in range(6) for i in range(30)]
    new = [Sample(f"n{c}-{i}", c, "") for c in range(6, 9) for i in range(5)]
    before = {s.id: split for split, g in stratified_split(old, seed=0).items() for s in g}
    after = {s.id: split for split, g in stratified_split(old + new, seed=0).items() for s in g}
    assert all(after[i] == split for i, split in before.items())


def test_reviewed_folder_is_prepared_by_hash_with_its_gate_split(
    tmp_path: Path, reviewed_folder: Callable[[int], Path]
) -> None:
    root = reviewed_folder(30)
    assert data.is_reviewed(root) and not data.is_prepared(root)
    prepared = data.prepare_source(root, tmp_path / "build")
    assert prepared.name.endswith("-reviewed") and data.is_prepared(prepared)
    manifest = data.Manifest.load(prepared / data.MANIFEST)
    assert manifest.split_rule == "hash" and len(manifest.samples) == 30
    expected = {s.id for s in data.hash_split(data.samples_from_count_folder(root)[0])["test"]}
    assert {s["id"] for s in manifest.samples if s["split"] == "test"} == expected
    assert data.prepare_source(prepared, tmp_path / "other") == prepared  # prepared: used as is


def test_parse_sources_reads_weights_either_way() -> None:
    assert data.parse_sources("a,b", "1,3") == [
        data.DataSource(Path("a"), 1.0),
        data.DataSource(Path("b"), 3.0),
    ]
    assert data.parse_sources("a:2, b") == [data.DataSource(Path("a"), 2.0), data.DataSource(Path("b"), 1.0)]
    with pytest.raises(ValueError, match="one number per --data folder"):
        data.parse_sources("a,b", "1")
    with pytest.raises(ValueError, match="positive"):
        data.parse_sources("a:-1")
