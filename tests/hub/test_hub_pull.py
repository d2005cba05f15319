"""`zoo pull`, hub.pull_zoo, hub.load_zoo and open_zoo("hf://...") against the test server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hub_helpers import assert_one_line_error

from catalog import open_zoo, verify_zoo
from catalog.errors import QueryError
from zoo_cli.main import cli

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")

DATA_GLOBS = ("models/*.parquet", "weights/*/*.safetensors")


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def _data_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for g in DATA_GLOBS for p in sorted(root.glob(g))}


def _manifest(root: Path) -> dict:
    return json.loads((root / "zoo.json").read_text())



def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".tmp-"))


# ================================================================================ full pulls
def test_round_trip_is_byte_identical_and_verifies_clean(hub, pushed, tmp_path: Path) -> None:
    repo, commit, src = pushed
    out = tmp_path / "pulled"
    result = _run("pull", repo, "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert f"pulled {repo}@main (commit {commit[:12]}) into {out}: 12 rows, 2 of 2" in result.output
    assert f"zoo pull {repo} --revision {commit}" in result.output

    assert _data_files(out) == _data_files(src) and len(_data_files(src)) == 4
    assert (out / "README.md").read_bytes() == (src / "README.md").read_bytes()
    pulled, original = _manifest(out), _manifest(src)
    assert pulled.pop("source") == {"repo_id": repo, "revision": "main", "commit": commit,
                                    "pulled_where": None}
    original.pop("source")
    assert pulled == original
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "models", "weights", "zoo.json"]
    report = verify_zoo(out)
    assert report.ok and report.warnings == [] and report.weights_checked == 12
    verify = _run("verify", str(out), "-q")
    assert verify.exit_code == 0 and "OK" in verify.output
    # only the zoo's files were fetched (not .gitattributes), each once
    assert sorted(hub.resolved_files()) == sorted(["zoo.json", "README.md", *_data_files(src)])


def test_pull_of_an_older_revision_and_a_tag(hub, zoo_copy: Path, repo_id: str,
                                             tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    from hub import pull_zoo, push_zoo

    first = push_zoo(zoo_copy, repo_id, progress=False)
    HfApi().create_tag(repo_id, tag="v1", repo_type="dataset", revision=first.commit)
    smaller = pull_zoo(repo_id, tmp_path / "smaller", where="checkpoint = 1", progress=False).path
    second = push_zoo(smaller, repo_id, progress=False)
    assert second.changed and second.commit != first.commit

    latest = pull_zoo(repo_id, tmp_path / "latest", progress=False)
    assert latest.commit == second.commit and latest.rows == 6
    for rev in (first.commit, first.commit[:10], "v1"):
        out = tmp_path / f"old-{rev}"
        r = pull_zoo(repo_id, out, revision=rev, progress=False)
        assert r.commit == first.commit and r.rows == 12 and r.revision == rev
        assert _data_files(out) == _data_files(zoo_copy)
        assert _manifest(out)["source"]["commit"] == first.commit
        assert _manifest(out)["source"]["revision"] == rev


# ================================================================================ partial pulls
def test_partial_pull_downloads_only_the_matching_shards(hub, pushed, tmp_path: Path) -> None:
    repo, commit, src = pushed
    source = open_zoo(src)
    wide = {r["weights_shard"] for r in source.table.to_pylist() if r["width"] == 12}
    assert len(wide) == 1 and len(source.manifest.shard_files()) == 2

    out = tmp_path / "wide"
    result = _run("pull", repo, "--where", "width = 12", "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert "6 rows, 1 of 2 weight shards (--where matched 6 of 12 rows)" in result.output
    parts = [f.path for f in source.manifest.part_files()]
    assert sorted(hub.resolved_files()) == sorted(["zoo.json", "README.md", *parts, *wide])

    zoo = open_zoo(out)
    assert len(zoo) == 6 and set(zoo.table.column("width").to_pylist()) == {12}
    assert [f.path for f in zoo.manifest.files] == [
        next(iter(wide)), "models/part-00000.parquet"]
    assert zoo.manifest.counts == {"rows": 6, "runs": 3, "architectures": 1, "status_ok": 6}
    assert list(zoo.manifest.architectures) == [zoo.table.column("arch_id")[0].as_py()]
    assert zoo.manifest.source == {"repo_id": repo, "revision": "main", "commit": commit,
                                   "pulled_where": "width = 12"}
    assert (out / next(iter(wide))).read_bytes() == (src / next(iter(wide))).read_bytes()
    report = verify_zoo(out)
    assert report.ok and report.warnings == []
    card = (out / "README.md").read_text()
    assert "- rows (model checkpoints): 6" in card and "the rows where `width = 12`" in card
    for mid in zoo.table.column("model_id").to_pylist():
        got, want = zoo.state_dict(mid), source.state_dict(mid)
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_partial_pull_of_some_rows_of_a_shard(hub, pushed, tmp_path: Path) -> None:
    """Rows of a kept shard that the filter dropped stay in the (unchanged) shard: verify is ok
    and only warns about them."""
    from hub import pull_zoo

    repo, _, src = pushed
    r = pull_zoo(repo, tmp_path / "late", where="checkpoint = 1 AND seed < 2", progress=False)
    assert (r.rows, r.rows_total, r.shards, r.shards_total) == (4, 12, 2, 2)
    zoo = open_zoo(r.path)
    assert sorted(zoo.table.column("checkpoint").to_pylist()) == [1, 1, 1, 1]
    assert [f.path for f in zoo.manifest.part_files()] == ["models/part-00000.parquet",
                                                           "models/part-00001.parquet"]
    report = verify_zoo(r.path)
    assert report.ok and report.weights_checked == 4
    assert len(report.warnings) == 2 and all("used by no metadata row" in str(w) for w in report.warnings)
    source = open_zoo(src)
    for mid in zoo.table.column("model_id").to_pylist():
        assert all(torch.equal(a, b) for a, b in zip(zoo.state_dict(mid).values(),
                                                     source.state_dict(mid).values(), strict=True))


def test_partial_pull_renumbers_files_without_gaps(hub, pushed, tmp_path: Path) -> None:
    from hub import pull_zoo

    repo, _, src = pushed
    narrow_arch = open_zoo(src).manifest.part_files()[0].arch_id
    r = pull_zoo(repo, tmp_path / "p", where=f"arch_id <> '{narrow_arch}' AND seed = 0",
                 progress=False)
    zoo = open_zoo(r.path)
    assert [f.path for f in zoo.manifest.part_files()] == ["models/part-00000.parquet"]
    assert zoo.table.column("weights_shard").to_pylist()[0].endswith("shard-00000.safetensors")
    assert verify_zoo(r.path).ok


def test_reproduce_command_names_the_out_given(hub, pushed, tmp_path: Path, monkeypatch) -> None:
    """`zoo pull REPO --out DIR` printed a reproduce command without --out (so it pulled to ./NAME);
    it names the --out given (quoted for the shell), and none when the default was used."""
    import shlex

    repo, commit, _ = pushed
    out = tmp_path / "my pulls" / "best"
    result = _run("pull", repo, "--where", "width = 12", "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    line = result.output.strip().splitlines()[-1]
    assert line == (f"reproduce with: zoo pull {repo} --revision {commit} --where 'width = 12' "
                    f"--out {shlex.quote(str(out))}")
    monkeypatch.chdir(tmp_path)
    result = _run("pull", repo, "-q")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == f"reproduce with: zoo pull {repo} --revision {commit}"


def test_reproduce_command_quotes_every_argument_for_the_shell(hub, pushed, tmp_path: Path) -> None:
    """The --where was put inside double quotes as it was: '"width" = 12' printed
    --where ""width" = 12", which a shell splits into other arguments. Each argument is quoted."""
    import shlex

    repo, commit, _ = pushed
    where = "\"width\" = 12 AND status <> '$HOME' AND seed >= 0"
    out = str(tmp_path / "it's here")
    result = _run("pull", repo, "--where", where, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    line = result.output.strip().splitlines()[-1].removeprefix("reproduce with: ")
    assert shlex.split(line) == ["zoo", "pull", repo, "--revision", commit, "--where", where, "--out", out]


def test_where_that_matches_nothing_or_is_invalid(hub, pushed, tmp_path: Path) -> None:
    from hub import pull_zoo

    repo, _, _ = pushed
    result = _run("pull", repo, "--where", "width = 999", "--out", str(tmp_path / "none"), "-q")
    assert_one_line_error(result, "matches none of the 12 rows")
    with pytest.raises(QueryError, match="unknown column 'nope'"):
        pull_zoo(repo, tmp_path / "bad", where="nope > 1", progress=False)
    assert not (tmp_path / "none").exists() and not (tmp_path / "bad").exists()
    assert _leftovers(tmp_path) == []


# ================================================================================ integrity
def test_tampered_file_is_refused_and_nothing_is_written(hub, zoo_copy: Path, repo_id: str,
                                                         tmp_path: Path) -> None:
    from hub import HubIntegrityError, load_zoo, push_zoo

    push_zoo(zoo_copy, repo_id, progress=False)
    shard = open_zoo(zoo_copy).manifest.shard_files()[1].path
    original = hub.get_file("dataset", repo_id, shard)
    hub.tamper("dataset", repo_id, shard, original[:-1] + bytes([original[-1] ^ 0xFF]))

    out = tmp_path / "out"
    result = _run("pull", repo_id, "--out", str(out), "-q")
    assert_one_line_error(result, "does not match its checksum", shard, f"nothing was written to {out}")
    assert not out.exists() and _leftovers(tmp_path) == []

    # a partial pull that needs only the other shard is fine; one that needs this one is refused
    other_arch = open_zoo(zoo_copy).manifest.shard_files()[0].arch_id
    ok = _run("pull", repo_id, "--where", f"arch_id = '{other_arch}'", "--out", str(tmp_path / "ok"), "-q")
    assert ok.exit_code == 0, ok.output
    bad = _run("pull", repo_id, "--where", f"arch_id <> '{other_arch}'", "--out", str(tmp_path / "bad"), "-q")
    assert_one_line_error(bad, "does not match its checksum")
    assert not (tmp_path / "bad").exists()

    # through the cache: the metadata loads; the shard is refused when it is first read, and
    # evicted, so a repaired repo loads
    zoo = load_zoo(repo_id, progress=False)
    with pytest.raises(HubIntegrityError, match="removed from the cache"):
        zoo.verify()
    hub.tamper("dataset", repo_id, shard, original)
    assert len(load_zoo(repo_id, progress=False)) == 12 and load_zoo(repo_id, progress=False).verify().ok


def _damage_cached(zoo, rel: str) -> None:
    """Flip the last byte of the HF cache's blob behind ``rel`` of the cached ``zoo`` (a disk
    error, say); the repo itself stays intact."""
    import os

    blob = (zoo.root / rel).resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))


def test_a_damaged_file_in_the_hf_cache_is_replaced_not_blamed_on_the_repo(
        hub, zoo_copy: Path, repo_id: str, tmp_path: Path) -> None:
    """A pull copies files the HF cache holds, and load_zoo reads them: a damaged cached copy
    made every later pull and load fail, naming the repo. It is now deleted and downloaded
    again, with a warning that names the cache."""
    from hub import load_zoo, push_zoo

    push_zoo(zoo_copy, repo_id, progress=False)
    zoo = load_zoo(repo_id, progress=False)
    zoo.select().state_dicts()  # caches both shards
    shard = zoo.manifest.shard_files()[0].path
    _damage_cached(zoo, shard)
    result = _run("pull", repo_id, "--out", str(tmp_path / "out"), "-q")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "cache" in result.output and shard in result.output
    assert verify_zoo(tmp_path / "out").ok and _data_files(tmp_path / "out") == _data_files(zoo_copy)
    assert _run("pull", repo_id, "--out", str(tmp_path / "again"), "-q").exit_code == 0

    # through the cache: a damaged shard (checked when first read) and a damaged Parquet part
    zoo = load_zoo(repo_id, progress=False)
    zoo.select().state_dicts()
    _damage_cached(zoo, shard)
    _damage_cached(zoo, zoo.manifest.part_files()[0].path)
    with pytest.warns(UserWarning, match="cache"):
        zoo = load_zoo(repo_id, progress=False)
    with pytest.warns(UserWarning, match=f"cache.*{shard}"):
        assert len(zoo.select().state_dicts()) == 12
    assert zoo.verify().ok


def _counting_hashes(monkeypatch) -> list[str]:
    """Record the files hub.remote hashes in full (their paths); files changed within the last
    50 ms count as just changed (instead of 2 s), so a test need not wait for its downloads to age."""
    import hub.remote as remote

    hashed: list[str] = []
    real = remote.sha256_file

    def counting(path):
        hashed.append(Path(path).as_posix())
        return real(path)

    monkeypatch.setattr(remote, "sha256_file", counting)
    monkeypatch.setattr(remote, "RACY_NS", 50_000_000, raising=False)  # (absent before file_sha256)
    monkeypatch.setattr(remote, "_digests", {}, raising=False)
    return hashed


def test_reopening_a_cached_zoo_does_not_hash_its_shards_again(hub, pushed, monkeypatch) -> None:
    """A shard of a zoo opened through the cache was hashed in full on its first read in every
    open (~30 ms per 50 MB): once this process has hashed it, an unchanged file is not read
    again, online or offline."""
    import time

    from hub import load_zoo

    repo, commit, _ = pushed
    hashed = _counting_hashes(monkeypatch)
    zoo = load_zoo(repo, revision=commit, progress=False)
    assert zoo.verify().ok  # every shard downloaded (and hashed)
    time.sleep(0.1)  # older than RACY_NS: the next hash of each is remembered
    mid = zoo.table.column("model_id")[0].as_py()
    shards = [f.path for f in zoo.manifest.shard_files()]
    zoo = load_zoo(repo, revision=commit, progress=False)
    assert zoo.verify().ok
    assert all(any(h.endswith(s) for h in hashed) for s in shards), hashed
    for _ in range(2):
        hashed.clear()
        zoo = load_zoo(repo, revision=commit, progress=False)
        zoo.state_dict(mid)
        assert zoo.verify().ok
        assert not [h for h in hashed if h.endswith(".safetensors")], hashed  # remembered, not read again
    hashed.clear()
    offline = load_zoo(repo, revision=commit, local_files_only=True)  # checks every cached shard at open
    offline.state_dict(mid)
    assert not [h for h in hashed if h.endswith(".safetensors")], hashed


@pytest.mark.parametrize("how", ["in place, mtime restored", "replaced"])
def test_a_cached_shard_damaged_after_it_was_hashed_is_hashed_again(hub, zoo_copy: Path, repo_id: str,
                                                                     monkeypatch, how: str) -> None:
    """What the remembered sha256 must not hide: the cached blob damaged in place (same size,
    its modification time set back: the change time still moves) or replaced by another file
    (a new inode) after this process hashed it is hashed again on the next open, found bad,
    and downloaded again."""
    import os
    import time

    from hub import load_zoo, push_zoo

    push_zoo(zoo_copy, repo_id, progress=False)
    hashed = _counting_hashes(monkeypatch)
    zoo = load_zoo(repo_id, progress=False)
    zoo.select().state_dicts()
    time.sleep(0.1)
    zoo = load_zoo(repo_id, progress=False)
    zoo.select().state_dicts()  # both shards hashed and remembered
    shard = zoo.manifest.shard_files()[0].path
    blob = (zoo.root / shard).resolve()
    st = blob.stat()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    if how == "replaced":
        tmp = blob.with_name(blob.name + ".tmp")
        tmp.write_bytes(bytes(data))
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, blob)
    else:
        os.chmod(blob, 0o644)
        blob.write_bytes(bytes(data))
        os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert blob.stat().st_size == st.st_size and blob.stat().st_mtime_ns == st.st_mtime_ns
    hashed.clear()
    zoo = load_zoo(repo_id, progress=False)
    with pytest.warns(UserWarning, match=f"cache.*{shard}"):
        assert len(zoo.select().state_dicts()) == 12
    assert any(h.endswith(shard) for h in hashed) and zoo.verify().ok


def test_a_file_changed_just_before_it_was_hashed_is_not_remembered(tmp_path: Path, monkeypatch) -> None:
    """git's racy-clean case: a change within the same timestamp tick as the hash could leave the
    file's stat as it was, so a file changed within RACY_NS of its hash is hashed every time."""
    import hashlib
    import time

    import hub.remote as remote

    hashed = _counting_hashes(monkeypatch)
    f = tmp_path / "blob"
    f.write_bytes(b"weights")
    want = hashlib.sha256(b"weights").hexdigest()
    assert remote.file_sha256(f) == want and remote.file_sha256(f) == want and len(hashed) == 2
    time.sleep(0.1)
    assert remote.file_sha256(f) == want and remote.file_sha256(f) == want and len(hashed) == 3
    f.write_bytes(b"changed")  # a new version of the file: hashed again
    assert remote.file_sha256(f) == hashlib.sha256(b"changed").hexdigest() and len(hashed) == 4


def test_tampered_manifest_is_refused(hub, zoo_copy: Path, repo_id: str, tmp_path: Path) -> None:
    from hub import push_zoo

    push_zoo(zoo_copy, repo_id, progress=False)
    text = hub.get_file("dataset", repo_id, "zoo.json").replace(b'"rows": 12', b'"rows": 13')
    hub.tamper("dataset", repo_id, "zoo.json", text)
    result = _run("pull", repo_id, "--out", str(tmp_path / "out"), "-q")
    assert_one_line_error(result, "zoo.json", "git blob id does not match")
    assert not (tmp_path / "out").exists()


def test_repo_missing_a_listed_file_is_refused(hub, zoo_copy: Path, repo_id: str,
                                               tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    from hub import push_zoo

    push_zoo(zoo_copy, repo_id, progress=False)
    shard = open_zoo(zoo_copy).manifest.shard_files()[0].path
    HfApi().delete_file(shard, repo_id=repo_id, repo_type="dataset")
    result = _run("pull", repo_id, "--out", str(tmp_path / "out"), "-q")
    assert_one_line_error(result, "is incomplete", shard, "push the zoo again")
    assert not (tmp_path / "out").exists()


# ================================================================================ errors
@pytest.fixture
def not_a_zoo(hub) -> str:
    import uuid

    from huggingface_hub import HfApi

    repo = f"test-org/plain-{uuid.uuid4().hex[:8]}"
    api = HfApi()
    api.create_repo(repo, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"# just a dataset\n", path_in_repo="README.md", repo_id=repo,
                    repo_type="dataset")
    return repo


def test_missing_repo_is_one_clear_line(hub, tmp_path: Path) -> None:
    result = _run("pull", "test-org/does-not-exist", "--out", str(tmp_path / "x"), "-q")
    assert_one_line_error(result, "'test-org/does-not-exist'", "was not found", "HF_TOKEN")
    assert not (tmp_path / "x").exists()


def test_missing_revision_is_one_clear_line(hub, pushed, tmp_path: Path) -> None:
    repo, _, _ = pushed
    result = _run("pull", repo, "--revision", "no-such-branch", "--out", str(tmp_path / "x"), "-q")
    assert_one_line_error(result, "revision 'no-such-branch' does not exist", repo)


def test_repo_without_a_zoo_is_one_clear_line(not_a_zoo: str, tmp_path: Path) -> None:
    result = _run("pull", not_a_zoo, "--out", str(tmp_path / "x"), "-q")
    assert_one_line_error(result, "is not a weightzoo zoo", "no zoo.json")


def test_private_repo_of_someone_else_is_not_found(hub, zoo_copy: Path, repo_id: str,
                                                   tmp_path: Path, monkeypatch) -> None:
    from hub import RepoNotFoundError, pull_zoo, push_zoo

    push_zoo(zoo_copy, repo_id, private=True, progress=False)
    with pytest.raises(RepoNotFoundError, match="private"):
        pull_zoo(repo_id, tmp_path / "x", token="someone-else", progress=False)
    assert pull_zoo(repo_id, tmp_path / "y", progress=False).rows == 12


def test_out_must_be_new_or_empty(hub, pushed, tmp_path: Path) -> None:
    repo, _, _ = pushed
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = _run("pull", repo, "--out", str(tmp_path / "full"), "-q")
    assert_one_line_error(result, "already exists and is not empty")
    assert hub.requests_log == []
    (tmp_path / "empty").mkdir()
    assert _run("pull", repo, "--out", str(tmp_path / "empty"), "-q").exit_code == 0
    assert verify_zoo(tmp_path / "empty").ok


def test_out_may_be_a_link_to_an_empty_directory_or_the_current_one(hub, pushed, tmp_path: Path,
                                                                   monkeypatch) -> None:
    """As for `zoo import` and `zoo export`: the zoo goes into the directory (it crashed after
    the whole download: the staged zoo was renamed onto the link, or onto '.')."""
    repo, _, src = pushed
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to("target")
    result = _run("pull", repo, "--out", str(tmp_path / "link"), "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "link").is_symlink() and _data_files(tmp_path / "target") == _data_files(src)
    assert verify_zoo(tmp_path / "target").ok
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    result = _run("pull", repo, "--out", ".", "-q")
    assert result.exit_code == 0, result.output
    assert verify_zoo(tmp_path / "cwd").ok and _leftovers(tmp_path / "cwd") == []
    assert _leftovers(tmp_path) == []


def test_out_that_cannot_hold_the_zoo_is_refused_before_downloading(hub, pushed, tmp_path: Path) -> None:
    from catalog.errors import WeightzooError
    from hub import pull_zoo

    repo, _, _ = pushed
    (tmp_path / "dangling").symlink_to("nowhere")
    (tmp_path / "file").write_text("mine")
    hub.requests_log.clear()
    result = _run("pull", repo, "--out", str(tmp_path / "dangling"), "-q")
    assert_one_line_error(result, "symbolic link", "does not exist")
    # A Python caller passed out=, not --out: the messages name both (they named --out only).
    with pytest.raises(WeightzooError, match=r"^out='.*dangling' \(--out\) is a symbolic link to nowhere, which "
                                             r"does not exist; .* choose another out \(--out\)$"):
        pull_zoo(repo, tmp_path / "dangling", progress=False)
    with pytest.raises(WeightzooError, match=r"^out='.*file' \(--out\) exists and is not a directory"):
        pull_zoo(repo, tmp_path / "file", progress=False)  # the CLI's click.Path refuses it too
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(WeightzooError, match=r"^out='.*full' \(--out\) already exists and is not empty; pull into "
                                             r"a new directory \(out=, --out\)"):
        pull_zoo(repo, tmp_path / "full", progress=False)
    assert hub.requests_log == [] and (tmp_path / "file").read_text() == "mine"


def test_out_inside_a_zoo_is_refused_before_downloading(hub, pushed, zoo_copy: Path) -> None:
    """`zoo pull REPO --out ZOO/pulled` wrote a zoo inside another one (README: no command writes
    inside a zoo); it is refused, as `zoo generate --out` refuses it, before any request."""
    repo, _, _ = pushed
    before = sorted(p.relative_to(zoo_copy).as_posix() for p in zoo_copy.rglob("*"))
    hub.requests_log.clear()
    result = _run("pull", repo, "--out", str(zoo_copy / "pulled"), "-q")
    assert_one_line_error(result, "--out", "lies inside the zoo directory", "choose a path outside it")
    assert hub.requests_log == []
    assert sorted(p.relative_to(zoo_copy).as_posix() for p in zoo_copy.rglob("*")) == before


@pytest.mark.parametrize("existing", [False, True], ids=["new-out", "empty-out"])
def test_an_interrupted_pull_resumes_with_the_files_it_had(hub, pushed, tmp_path: Path, monkeypatch,
                                                           existing: bool) -> None:
    """Ctrl-C said "run the same command again to resume", but the staging folder was deleted
    and the next pull downloaded everything again. It is kept now, and the same pull reuses it."""
    import hub.pull as pull_module
    from hub import pull_zoo

    repo, _, src = pushed
    out = tmp_path / "out"
    if existing:
        out.mkdir()
    real = pull_module._check_shards

    def interrupted(*args, **kwargs) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pull_module, "_check_shards", interrupted)  # after every file arrived
    with pytest.raises(KeyboardInterrupt):
        pull_zoo(repo, out, progress=False)
    assert len(_leftovers(out if existing else tmp_path)) == 1 and not (out / "zoo.json").exists()
    monkeypatch.setattr(pull_module, "_check_shards", real)
    hub.requests_log.clear()
    assert pull_zoo(repo, out, progress=False).rows == 12
    assert hub.resolved_files() == []  # nothing downloaded again
    assert _data_files(out) == _data_files(src) and verify_zoo(out).ok
    assert _leftovers(tmp_path) == [] and _leftovers(out) == []


def test_stale_staging_folders_of_dead_pulls_are_removed(hub, pushed, tmp_path: Path) -> None:
    """A pull killed by SIGTERM left its .tmp-pull-* folder for good. A pull now removes the
    ones no process holds (checked with the zoo lock), and leaves a live pull's alone."""
    from catalog.lock import ZooLock
    from hub import pull_zoo
    from hub.pull import STAGING_MARKER

    repo, _, _ = pushed
    stale, live, foreign = (tmp_path / f".tmp-pull-{n}" for n in ("dead", "live", "notours"))
    for d in (stale, live, foreign):
        (d / "download").mkdir(parents=True)
    (stale / STAGING_MARKER).write_text("{}")
    (live / STAGING_MARKER).write_text("{}")
    lock = ZooLock(live)  # as a running pull holds it
    try:
        pull_zoo(repo, tmp_path / "out", progress=False)
        assert _leftovers(tmp_path) == [".tmp-pull-live", ".tmp-pull-notours"]
    finally:
        lock.release()


# ================================================================================ hf:// and the cache
def test_open_zoo_hf_url_and_load_zoo_use_the_hf_cache(hub, pushed) -> None:
    import os

    from hub import load_zoo

    repo, commit, src = pushed
    local = open_zoo(src)
    for zoo in (open_zoo(f"hf://datasets/{repo}@{commit}"), open_zoo(f"hf://datasets/{repo}"),
                load_zoo(repo, revision="main", progress=False)):
        assert zoo.root.is_relative_to(os.environ["HF_HOME"]) and zoo.root.name == commit
        assert zoo.manifest.source["commit"] == commit
        assert zoo.table.equals(local.table)
        mid = local.table.column("model_id")[7].as_py()
        assert all(torch.equal(a, b) for a, b in zip(zoo.state_dict(mid).values(),
                                                     local.state_dict(mid).values(), strict=True))
        assert zoo.verify().ok
    hub.requests_log.clear()
    load_zoo(repo, progress=False)  # everything is cached: nothing is downloaded again
    assert hub.resolved_files() == []


def test_a_cache_that_cannot_be_written_is_one_error(hub, pushed, tmp_path, monkeypatch) -> None:
    """An HF cache that cannot be written (here: under a file; a read-only HF_HOME alike) makes
    open_zoo("hf://..."), `zoo query hf://...` and `zoo info hf://...` fail in one line that says
    to set HF_HOME (they failed with a PermissionError traceback); a pull does not use it."""
    from huggingface_hub import constants

    from hub import HubError, load_zoo, pull_zoo

    repo, _, _ = pushed
    (tmp_path / "file").write_text("not a folder")
    cache = tmp_path / "file" / "hub"
    with pytest.raises(HubError, match=f"cannot write the Hugging Face cache {cache} to open {repo}: .*set HF_HOME"):
        load_zoo(repo, cache_dir=cache, progress=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    with pytest.raises(HubError, match="cannot write the Hugging Face cache .*set HF_HOME"):
        open_zoo(f"hf://datasets/{repo}", progress=False)
    for args in (["query", f"hf://datasets/{repo}", "--limit", "1"], ["info", f"hf://datasets/{repo}"]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 1 and "Traceback" not in r.output, r.output
        assert r.output.startswith("error: cannot write the Hugging Face cache") and "HF_HOME" in r.output
    assert pull_zoo(repo, tmp_path / "out", progress=False).rows == 12


def test_load_zoo_offline_uses_the_cache(hub, pushed, monkeypatch) -> None:
    from hub import load_zoo

    repo, commit, _ = pushed
    load_zoo(repo, revision=commit, progress=False)
    hub.requests_log.clear()
    zoo = load_zoo(repo, revision=commit, local_files_only=True)
    assert len(zoo) == 12 and hub.requests_log == []


def test_load_zoo_offline_by_branch_or_tag_after_one_online_open(hub, zoo_copy: Path, repo_id: str,
                                                                 monkeypatch) -> None:
    """An online open records which commit the branch (or tag) named; offline opens by that
    name then find the snapshot (they failed with "not in the local cache" before)."""
    from huggingface_hub import HfApi, constants

    from hub import HubUnreachableError, load_zoo, push_zoo

    commit = push_zoo(zoo_copy, repo_id, progress=False).commit
    HfApi().create_tag(repo_id, tag="v1", repo_type="dataset", revision=commit)
    load_zoo(repo_id, progress=False).select().state_dicts()
    load_zoo(repo_id, revision="v1", progress=False)
    hub.requests_log.clear()
    for rev in (None, "main", "v1"):
        zoo = load_zoo(repo_id, revision=rev, local_files_only=True)
        assert len(zoo.select().state_dicts()) == 12 and zoo.manifest.source["commit"] == commit
    with pytest.raises(HubUnreachableError, match="'never-opened'.*not in the local cache.*online once"):
        load_zoo(repo_id, revision="never-opened", local_files_only=True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert len(open_zoo(f"hf://datasets/{repo_id}")) == 12
    assert hub.requests_log == []


@pytest.mark.parametrize("url, message", [
    ("hf://test-org/zoo", "does not name a dataset repo"),
    ("hf://datasets/just-a-name", "does not name one repo"),
    ("hf://datasets/org/name/sub/dir", "does not name one repo"),
    ("hf://datasets/org/name@", "empty revision"),
])
def test_bad_hf_urls(url: str, message: str) -> None:
    from catalog import WeightzooError

    with pytest.raises(WeightzooError, match=message):
        open_zoo(url)


def test_hf_url_revisions_are_parsed() -> None:
    from hub import parse_hf_url

    assert parse_hf_url("hf://datasets/org/name") == ("org/name", None)
    assert parse_hf_url("hf://datasets/org/name@v1.0") == ("org/name", "v1.0")
    assert parse_hf_url("hf://datasets/org/name@feature/x") == ("org/name", "feature/x")
    assert parse_hf_url("hf://datasets/org/name@refs%2Fpr%2F1") == ("org/name", "refs/pr/1")


def test_pulled_files_respect_the_umask(hub, pushed, tmp_path: Path) -> None:
    """Files a pull writes itself (the manifest, the card, filtered parts) are as readable as
    the umask allows, like the downloaded ones: 0644 under umask 022."""
    import os
    import stat

    from hub import pull_zoo

    repo, _, _ = pushed
    old = os.umask(0o022)
    try:
        roots = [pull_zoo(repo, tmp_path / "full", progress=False).path,
                 pull_zoo(repo, tmp_path / "part", where="checkpoint = 1 AND seed < 2",
                          progress=False).path]
    finally:
        os.umask(old)
    for root in roots:
        modes = {p.relative_to(root).as_posix(): oct(stat.S_IMODE(p.stat().st_mode))
                 for p in root.rglob("*") if p.is_file()}
        assert len(modes) == 6 and set(modes.values()) == {oct(0o644)}, modes
