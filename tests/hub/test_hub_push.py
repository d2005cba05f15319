"""`zoo push` / hub.push_zoo against the Hub-compatible test server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hub_helpers import assert_one_line_error

from catalog import IntegrityError, WeightzooError, open_zoo
from zoo_cli.main import cli

# huggingface_hub's LFS PUT passes a file object as `data=`, which httpx2 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


def _lfs_puts(hub) -> list[str]:
    return [path for method, path in hub.requests_log if method == "PUT"]


def _commit_posts(hub) -> list[str]:
    return [path for method, path in hub.requests_log if method == "POST" and "/commit/" in path]


def _card_header(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))



def test_push_creates_repo_with_zoo_layout_and_card(hub, zoo_copy: Path, repo_id: str) -> None:
    from huggingface_hub import HfApi

    result = _run("push", str(zoo_copy), repo_id, "--quiet")
    assert result.exit_code == 0, result.output
    assert f"pushed {zoo_copy} to {repo_id}@main: commit" in result.output
    assert "created the repo" in result.output

    zoo = open_zoo(zoo_copy)
    expected = {".gitattributes", "README.md", "zoo.json", *(f.path for f in zoo.manifest.files)}
    assert set(HfApi().list_repo_files(repo_id, repo_type="dataset")) == expected
    for rel in expected - {".gitattributes"}:  # the repo layout is the zoo layout, byte for byte
        assert hub.get_file("dataset", repo_id, rel) == (zoo_copy / rel).read_bytes(), rel

    card = hub.get_file("dataset", repo_id, "README.md").decode()
    header = _card_header(card)
    assert header["configs"] == [{"config_name": "default",
                                  "data_files": [{"split": "train", "path": "models/*.parquet"}]}]
    assert header["license"] == "cc-by-4.0"
    assert {"weight-space-learning", "model-zoo"} <= set(header["tags"])
    assert header["size_categories"] == ["n<1K"]
    assert "- rows (model checkpoints): 12" in card and "- training runs: 6" in card
    for arch_id in zoo.manifest.architectures:
        assert f"`{arch_id}`" in card
    assert "| test_acc |" in card  # metric summary
    assert f'open_zoo("hf://datasets/{repo_id}")' in card
    assert f'load_dataset("{repo_id}", split="train")' in card
    assert f"zoo pull {repo_id}" in card


def test_quiet_silences_the_client_s_messages(hub, zoo_copy: Path, repo_id: str, caplog) -> None:
    """huggingface_hub logs "No files have been modified since last commit..." on an unchanged
    push; --quiet printed it anyway. Without --quiet it stays (the test can see it)."""
    import logging

    from hub import push_zoo

    push_zoo(zoo_copy, repo_id, progress=False)
    with caplog.at_level(logging.WARNING, logger="huggingface_hub"):
        assert _run("push", str(zoo_copy), repo_id, "-q").exit_code == 0
        assert not [r for r in caplog.records if r.name.startswith("huggingface_hub")]
        assert _run("push", str(zoo_copy), repo_id).exit_code == 0
        assert any("No files have been modified" in r.getMessage() for r in caplog.records)
    assert logging.getLogger("huggingface_hub").level == logging.WARNING  # restored


def test_pushing_an_unchanged_zoo_again_uploads_nothing(hub, zoo_copy: Path, repo_id: str) -> None:
    from huggingface_hub import HfApi

    from hub import push_zoo

    first = push_zoo(zoo_copy, repo_id, progress=False)
    assert first.changed and first.created_repo
    hub.requests_log.clear()
    result = _run("push", str(zoo_copy), repo_id, "-q")
    assert result.exit_code == 0, result.output
    assert "already holds this zoo" in result.output and "nothing uploaded" in result.output
    assert _lfs_puts(hub) == [] and _commit_posts(hub) == []
    commits = HfApi().list_repo_commits(repo_id, repo_type="dataset")
    assert [c.commit_id for c in commits][0] == first.commit and len(commits) == 2


def test_push_to_a_new_branch_with_a_message(hub, zoo_copy: Path, repo_id: str) -> None:
    from huggingface_hub import HfApi

    result = _run("push", str(zoo_copy), repo_id, "--revision", "dev", "--message", "first zoo", "-q")
    assert result.exit_code == 0, result.output
    assert "created the repo" in result.output
    api = HfApi()
    branches = {b.name for b in api.list_repo_refs(repo_id, repo_type="dataset").branches}
    assert branches == {"main", "dev"}
    assert "zoo.json" in api.list_repo_files(repo_id, repo_type="dataset", revision="dev")
    assert "zoo.json" not in api.list_repo_files(repo_id, repo_type="dataset")  # main untouched
    assert api.list_repo_commits(repo_id, repo_type="dataset", revision="dev")[0].title == "first zoo"


def test_push_replaces_data_files_of_an_earlier_zoo(hub, zoo_copy: Path, repo_id: str,
                                                    tmp_path: Path) -> None:
    """Pushing a smaller zoo deletes the old parts and shards, so `models/*.parquet` (what
    `datasets` reads) holds exactly the new zoo."""
    from huggingface_hub import HfApi

    from hub import pull_zoo, push_zoo

    push_zoo(zoo_copy, repo_id, progress=False)
    subset = pull_zoo(repo_id, tmp_path / "subset", where="width = 12", progress=False).path
    result = push_zoo(subset, repo_id, progress=False)
    assert result.changed
    expected = {".gitattributes", "README.md", "zoo.json",
                *(f.path for f in open_zoo(subset).manifest.files)}
    assert set(HfApi().list_repo_files(repo_id, repo_type="dataset")) == expected
    assert len(expected) == 5  # one part, one shard


def test_load_dataset_reads_the_metadata_rows(hub, zoo_copy: Path, repo_id: str, tmp_path: Path) -> None:
    import datasets
    import hubserver

    from hub import push_zoo

    hubserver.configure_datasets()
    # Its own repo, not the session's `pushed` one: load_dataset fetches README.md into the
    # shared Hub cache, and the pull tests count what a pull of `pushed` fetches.
    repo, zoo_dir = repo_id, zoo_copy
    push_zoo(zoo_dir, repo, progress=False)
    table = open_zoo(zoo_dir).table
    ds = datasets.load_dataset(repo, split="train", cache_dir=str(tmp_path / "ds"))
    assert ds.num_rows == table.num_rows == 12
    assert ds.column_names == table.column_names
    assert sorted(ds["model_id"]) == sorted(table.column("model_id").to_pylist())
    by_id = dict(zip(ds["model_id"], ds["test_acc"], strict=True))
    for mid, acc in zip(*(table.column(c).to_pylist() for c in ("model_id", "test_acc")), strict=True):
        assert by_id[mid] == pytest.approx(acc)


def test_push_without_write_permission_is_one_clear_line(hub, pushed, zoo_copy: Path) -> None:
    repo, commit, _ = pushed
    hub.set_read_only(repo)
    try:
        (zoo_copy / "README.md").write_text("changed\n")  # something to upload
        result = _run("push", str(zoo_copy), repo, "-q")
    finally:
        hub.set_read_only(repo, False)
    assert_one_line_error(result, "no permission to write", repo, "HF_TOKEN")
    assert _commit_posts(hub) == []


def test_private_push_to_a_public_repo_is_refused(hub, pushed, zoo_copy: Path) -> None:
    repo, _, _ = pushed
    result = _run("push", str(zoo_copy), repo, "--private", "-q")
    assert_one_line_error(result, "already exists and is public", "nothing was pushed")
    assert _lfs_puts(hub) == [] and _commit_posts(hub) == []


def test_push_to_a_tag_is_refused(hub, pushed, zoo_copy: Path) -> None:
    from huggingface_hub import HfApi

    repo, commit, _ = pushed
    HfApi().create_tag(repo, tag="v-frozen", repo_type="dataset", revision=commit, exist_ok=True)
    result = _run("push", str(zoo_copy), repo, "--revision", "v-frozen", "-q")
    assert_one_line_error(result, "it is a tag", "--revision")


def test_corrupt_or_unfinished_zoo_is_not_pushed(hub, zoo_copy: Path, repo_id: str) -> None:
    from hub import push_zoo

    shard = next((zoo_copy / "weights").rglob("*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="refusing to push"):
        push_zoo(zoo_copy, repo_id, progress=False)
    assert hub.requests_log == []  # checked before talking to the Hub

    manifest = (zoo_copy / "zoo.json").read_text().replace('"complete": true', '"complete": false')
    (zoo_copy / "zoo.json").write_text(manifest)
    with pytest.raises(WeightzooError, match="unfinished zoo"):
        push_zoo(zoo_copy, repo_id, progress=False)


def test_push_of_a_non_zoo_directory_is_one_clear_line(tmp_path: Path, repo_id: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = _run("push", str(tmp_path), repo_id)
    assert_one_line_error(result, "is not a weightzoo zoo")


def test_push_is_refused_while_another_process_writes_the_zoo(hub, zoo_copy: Path, repo_id: str) -> None:
    """A push rewrites README.md and uploads what verify checked: while a build, analyze or embed
    holds the zoo's write lock it is refused, before anything is written or sent."""
    from catalog.lock import ZooLock

    card = (zoo_copy / "README.md").read_bytes()
    with ZooLock(zoo_copy, command="zoo analyze zoo --metrics cka"):
        result = _run("push", str(zoo_copy), repo_id, "-q")
        assert_one_line_error(result, f"zoo {zoo_copy} is being written by process", "zoo analyze zoo --metrics cka")
    assert (zoo_copy / "README.md").read_bytes() == card
    assert hub.requests_log == []


def test_push_holds_the_lock_until_its_upload_ends(hub, zoo_copy: Path, repo_id: str, monkeypatch) -> None:
    from huggingface_hub import HfApi

    from catalog.lock import LOCK_NAME, ZooLock, ZooLockedError
    from hub import push_zoo

    upload = HfApi.upload_folder
    refused = []

    def upload_folder(self, **kwargs):
        with pytest.raises(ZooLockedError, match=f"zoo push {repo_id}") as e:  # a writer starting now
            ZooLock(zoo_copy, command="zoo embed")
        refused.append(e.value)
        return upload(self, **kwargs)

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    push_zoo(zoo_copy, repo_id, progress=False)
    assert len(refused) == 1 and not (zoo_copy / LOCK_NAME).exists()
