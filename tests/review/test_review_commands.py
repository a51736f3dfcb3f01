"""`bincount correct` / `export-labels` / `review` behind their options, against the stack in moto."""

from __future__ import annotations

import csv
import dataclasses
import json
import shlex
import socket
from pathlib import Path

import boto3
import pytest
from bincount.corrections import ACCEPTED, RecordVersion
from review_support import REGION, STACK_NAME, ReviewStack, sk

from cli.commands.correct import check_count, correct_photo, photo_key
from cli.commands.export_labels import check_out_dir, export, export_name, parse_since
from cli.commands.review import check_port
from cli.main import main
from cli.review.identity import os_user, reviewer_for
from cli.review.service import ReviewService
from common.errors import NotFound, Refused, UsageError
from training.data import MANIFEST as DATA_MANIFEST
from training.data import is_reviewed, prepare_local, samples_from_count_folder

MOTO_PRINCIPAL = "arn:aws:sts::123456789012:user/moto"


def test_correct_uses_the_console_path_and_names_the_iam_principal(seeded: ReviewStack) -> None:
    answer = correct_photo(seeded.resources, "BIN-1/20261126T120000Z-cam1.jpg", "+", reviewer=None)
    assert answer["status"] == "saved" and answer["count"] == 6 and answer["count_is_lower_bound"]
    assert answer["reviewer"] == MOTO_PRINCIPAL and answer["latest_updated"]
    assert seeded.image(seeded.seeded[2])["reviewer"] == MOTO_PRINCIPAL
    assert len(seeded.events()) == 1


def test_correct_refusals_are_one_line_with_exit_codes(seeded: ReviewStack) -> None:
    resources = seeded.resources
    with pytest.raises(UsageError, match=r"outside 0\.\.5") as out_of_range:
        correct_photo(resources, "BIN-1/20261126T120000Z-cam1.jpg", "9", reviewer=None)
    assert out_of_range.value.exit_code == 2
    with pytest.raises(NotFound, match=r"no record of photo incoming/BIN-1/nothing\.jpg"):
        correct_photo(resources, "BIN-1/nothing.jpg", "1", reviewer=None)
    correct_photo(resources, "BIN-1/20261126T120000Z-cam1.jpg", "2", reviewer=None)
    with pytest.raises(Refused, match="already saved 2"):
        correct_photo(resources, "BIN-1/20261126T120000Z-cam1.jpg", "3", reviewer=None)
    with pytest.raises(UsageError, match="IAM principal"):
        correct_photo(resources, "BIN-1/20261126T120000Z-cam1.jpg", "2", reviewer="mallory")


def test_keys_in_every_form_a_person_types(seeded: ReviewStack) -> None:
    resources = seeded.resources
    full = "incoming/BIN-1/a.jpg"
    assert photo_key(resources, full) == photo_key(resources, "BIN-1/a.jpg") == full
    assert photo_key(resources, f"s3://{resources.ingest_bucket}/{full}") == full
    with pytest.raises(UsageError, match="not in the ingest bucket"):
        photo_key(resources, f"s3://elsewhere/{full}")


def test_local_reviewer_is_the_os_user_unless_named(seeded: ReviewStack) -> None:
    # the local stack (an endpoint URL): no AWS call is made for the reviewer's name
    local = dataclasses.replace(seeded.resources, endpoint_url="http://127.0.0.1:1")
    assert reviewer_for(local, "dana") == "dana"
    assert reviewer_for(local, None) == os_user() != ""
    with pytest.raises(UsageError):
        reviewer_for(local, "  ")


def test_option_checks(tmp_path: Path) -> None:
    assert parse_since("2026-11-26") == "2026-11-26T00:00:00.000Z" and parse_since(None) == ""
    assert check_count(" + ") == "+" and check_count("12") == "12"
    with pytest.raises(UsageError, match="must be a number"):
        check_count("-1")
    with pytest.raises(UsageError, match="not a date"):
        parse_since("yesterday")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        check_out_dir(tmp_path / "file")
    with pytest.raises(UsageError, match="holds other files"):
        check_out_dir(tmp_path)
    with pytest.raises(UsageError, match=r"1\.\.65535"):
        check_port(70000)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(Refused, match="in use"):
            check_port(taken.getsockname()[1])


def test_export_names_are_readable_and_distinct() -> None:
    name = export_name("incoming/BIN-1/20261126T101500Z-cam1.jpg", "v1", "incoming/")
    assert (
        name.startswith("BIN-1__20261126T101500Z-cam1-")
        and len(name) == len("BIN-1__20261126T101500Z-cam1-") + 12
    )
    assert export_name("incoming/a b/x.jpg", "v1", "incoming/") != export_name(
        "incoming/a_b/x.jpg", "v1", "incoming/"
    )
    # two uploads of one key are two files
    assert export_name("incoming/a/x.jpg", "v1", "incoming/") != export_name(
        "incoming/a/x.jpg", "v2", "incoming/"
    )


def read_labels(out: Path) -> list[dict[str, str]]:
    with (out / "labels.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_export_labels_writes_a_training_set_and_adds_only_what_is_new(
    seeded: ReviewStack, tmp_path: Path
) -> None:
    resources, out = seeded.resources, tmp_path / "labels"
    correct_photo(resources, "BIN-1/20261126T110000Z-cam1.jpg", "4", reviewer=None)
    correct_photo(resources, "BIN-2/20261126T100000Z-cam1.jpg", "+", reviewer=None)
    first = export(resources, out, "")
    assert len(first.added) == 2 and first.unchanged == 0 and not first.missing
    rows = {row["source_key"]: row for row in read_labels(out)}
    unsure = rows["incoming/BIN-1/20261126T110000Z-cam1.jpg"]
    assert (
        unsure["image"].startswith("images/4/BIN-1__20261126T110000Z-cam1-") and unsure["model_count"] == "3"
    )
    assert rows["incoming/BIN-2/20261126T100000Z-cam1.jpg"]["count"] == "6"  # ">5" as the folder 6
    photo = (out / unsure["image"]).read_bytes()
    assert (
        photo
        == boto3.client("s3")
        .get_object(Bucket=resources.ingest_bucket, Key=unsure["source_key"])["Body"]
        .read()
    )
    manifest = json.loads((out / "sources.json").read_text())
    assert {entry["key"] for entry in manifest["photos"]} == set(rows)
    assert {entry["version"] for entry in manifest["photos"]} == {
        row["source_version"] for row in rows.values()
    }
    assert all(
        entry["reviewer"] == MOTO_PRINCIPAL and entry["etag"] and entry["bucket"]
        for entry in manifest["photos"]
    )

    samples, rejected = samples_from_count_folder(out)  # what `make train DATA=` reads
    assert sorted(s.count for s in samples) == [4, 6] and not rejected
    assert all(Path(s.source).is_file() for s in samples)

    seen = RecordVersion.of(seeded.image(seeded.seeded[1])).token()
    correct_photo(resources, "BIN-1/20261126T110000Z-cam1.jpg", "3", None, seen=seen)
    correct_photo(resources, "BIN-4/20261126T090000Z-cam1.jpg", "1", reviewer=None)
    second = export(resources, out, "")
    assert (len(second.added), len(second.moved), second.unchanged) == (1, 1, 1)
    images = sorted(str(p.relative_to(out)) for p in (out / "images").rglob("*.jpg"))
    assert [i.split("/")[1] for i in images] == ["1", "3", "6"]  # the re-labelled photo moved from 4 to 3
    assert len(read_labels(out)) == 3
    assert not (out / DATA_MANIFEST).exists()  # so train.py --data prepares it as a count folder
    assert is_reviewed(out)  # ... split by photo hash, its test part the gate set (training.data)
    prepared = prepare_local(out, tmp_path / "prepared", workers=1)
    assert len(prepared.samples) == 3 and not prepared.rejected
    third = export(resources, out, "")
    assert (third.added, third.moved, third.unchanged) == ([], [], 3)


def test_export_tells_accepted_labels_from_typed_ones(seeded: ReviewStack, tmp_path: Path) -> None:
    service = ReviewService.for_stack(seeded.resources, reviewer="alice", photo_mode="proxy")
    service.correct("BIN-3", sk(seeded.seeded[6]), "2", source=ACCEPTED)  # the model said 2
    service.correct("BIN-1", sk(seeded.seeded[1]), "4")
    report = export(seeded.resources, tmp_path / "labels", "")
    assert report.sources == {"accepted": 1, "typed": 1}
    assert "(labels: 1 accepted, 1 typed)" in report.summary(tmp_path / "labels")
    rows = {row["bin_id"]: row["label_source"] for row in read_labels(tmp_path / "labels")}
    assert rows == {"BIN-3": "accepted", "BIN-1": "typed"}


def test_export_since_and_photos_gone(seeded: ReviewStack, tmp_path: Path) -> None:
    resources = seeded.resources
    correct_photo(resources, "BIN-1/20261126T110000Z-cam1.jpg", "4", reviewer=None)
    assert export(resources, tmp_path / "later", parse_since("2999-01-01")).added == []
    photo = seeded.seeded[1]
    boto3.client("s3").delete_object(Bucket=photo.bucket, Key=photo.key, VersionId=photo.version_id)
    report = export(resources, tmp_path / "gone", "")
    assert report.missing == [f"{photo.key} ({photo.version})"] and report.added == []
    assert read_labels(tmp_path / "gone") == []


def test_bincount_subcommands_end_to_end(
    seeded: ReviewStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bincount correct` and `bincount export-labels` through cli/main.py on a "deployed" stack."""
    stack = ["--stack", STACK_NAME, "--region", REGION]
    assert main(["correct", "BIN-1/20261126T110000Z-cam1.jpg", "4", *stack, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["count"] == 4 and answer["status"] == "saved" and answer["model_count"] == 3
    assert main(["correct", "BIN-1/20261126T110000Z-cam1.jpg", "2", *stack]) == 1
    conflict = capsys.readouterr().err
    assert conflict.count("\n") == 1 and "already saved 4" in conflict and "--seen" in conflict
    seen = shlex.split(conflict.split("--seen ", 1)[1])[0]  # the line's --seen works as printed
    assert main(["correct", "BIN-1/20261126T110000Z-cam1.jpg", "2", "--seen", seen, *stack]) == 0
    assert "saved count 2" in capsys.readouterr().out
    assert main(["export-labels", str(tmp_path / "out"), *stack]) == 0
    assert "1 added, 0 re-labelled, 0 unchanged (labels: 1 typed)" in capsys.readouterr().out
    assert main(["export-labels", str(tmp_path / "out"), "--since", "never", *stack]) == 2


def test_a_reuploaded_key_is_corrected_by_version_and_exported_twice(
    seeded: ReviewStack, tmp_path: Path
) -> None:
    resources, key = seeded.resources, "BIN-1/20261126T110000Z-cam1.jpg"
    first = seeded.seeded[1]
    second = seeded.photo("BIN-1", "20261126T110000Z", 1, 0.2, drawn=1)  # same key, new bytes
    with pytest.raises(Refused, match=rf"has 2 uploads: .*{first.version}.*{second.version}.*pass --version"):
        correct_photo(resources, key, "4", reviewer=None)
    assert correct_photo(resources, key, "4", None, version=first.version)["image_version"] == first.version
    assert correct_photo(resources, key, "1", None, version=second.version)["image_version"] == second.version
    with pytest.raises(NotFound, match="version nope"):
        correct_photo(resources, key, "1", None, version="nope")
    out = tmp_path / "labels"
    assert len(export(resources, out, "").added) == 2
    rows = {row["source_version"]: row for row in read_labels(out)}
    assert (
        set(rows) == {first.version, second.version}
        and rows[first.version]["image"] != rows[second.version]["image"]
    )
    s3 = boto3.client("s3")
    for upload in (first, second):  # each file holds its own upload's bytes
        body = s3.get_object(Bucket=upload.bucket, Key=upload.key, VersionId=upload.version_id)["Body"].read()
        assert (out / rows[upload.version]["image"]).read_bytes() == body
    assert export(resources, out, "").unchanged == 2


def garble(stack: ReviewStack, photo_index: int, **fields: object) -> None:
    """A raw UpdateItem of the kind ReviewerPolicy still lets a person send: any value in a label field."""
    photo = stack.seeded[photo_index]
    names = {f"#f{i}": name for i, name in enumerate(fields)}
    values = {f":v{i}": value for i, value in enumerate(fields.values())}
    stack.table.update_item(
        Key={"pk": f"BIN#{photo.bin_id}", "sk": sk(photo)},
        UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def test_export_names_a_malformed_record_in_one_line_and_exports_the_rest(
    seeded: ReviewStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    correct_photo(seeded.resources, "BIN-1/20261126T110000Z-cam1.jpg", "4", reviewer=None)
    correct_photo(seeded.resources, "BIN-4/20261126T090000Z-cam1.jpg", "1", reviewer=None)
    garble(seeded, 2, human_count="../../abc", reviewed_at="2026-12-01T00:00:00.000Z")
    out = tmp_path / "labels"
    stack = ["--stack", STACK_NAME, "--region", REGION]
    assert main(["export-labels", str(out), *stack]) == 1
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if "abc" in line)
    assert sk(seeded.seeded[2]) in line and "human_count '../../abc' is not a count" in line
    assert "2 added" in printed and "Traceback" not in printed
    assert sorted(p.parent.name for p in (out / "images").rglob("*.jpg")) == ["1", "4"]
    assert not [p for p in tmp_path.iterdir() if p.name != "labels"]  # no building folder left


class FailingPhotos:
    """The photo reader of a real export that breaks on its ``n``-th photo (network gone)."""

    def __init__(self, real: object, n: int) -> None:
        self.real, self.n, self.calls = real, n, 0

    def get(self, image: object) -> tuple[bytes, str]:
        self.calls += 1
        if self.calls == self.n:
            raise ConnectionError("connection reset")
        return self.real.get(image)  # type: ignore[attr-defined]


def test_an_export_is_written_whole_or_not_at_all(seeded: ReviewStack, tmp_path: Path) -> None:
    from cli.commands.export_labels import export_labels
    from cli.review.service import ReviewService

    resources, out = seeded.resources, tmp_path / "labels"
    correct_photo(resources, "BIN-1/20261126T110000Z-cam1.jpg", "4", reviewer=None)
    assert len(export(resources, out, "").added) == 1
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    correct_photo(resources, "BIN-4/20261126T090000Z-cam1.jpg", "1", reviewer=None)
    correct_photo(resources, "BIN-2/20261126T100000Z-cam1.jpg", "2", reviewer=None)
    service = ReviewService.for_stack(resources, reviewer="export")
    with pytest.raises(ConnectionError):
        export_labels(service.labels.labelled_images(), FailingPhotos(service.photos, 2), out, "incoming/")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the previous export, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["labels"]
    assert len(export(resources, out, "").added) == 2  # and the next run finishes the job
