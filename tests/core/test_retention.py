"""KEEP_VERSIONS: each full copy of the weights used to stay on disk forever."""

from __future__ import annotations

import pytest

from prefloop.artifacts import ArtifactStore
from prefloop.errors import BadRequest, ModelNotFound


def publish(store: ArtifactStore, project_id: int, kind: str, make_current: bool = True) -> str:
    with store.staging(project_id, kind) as staged:
        (staged / "config.json").write_text("{}")
        (staged / "model.safetensors").write_bytes(b"\0" * 1024)
        return store.publish(project_id, kind, staged, make_current=make_current)


def names(store: ArtifactStore, project_id: int, kind: str) -> list[str]:
    return [v["version"] for v in store.versions(project_id, kind)]


def test_only_the_newest_versions_stay_never_the_current_or_a_pinned_one(tmp_path):
    store = ArtifactStore(tmp_path, keep_versions=3)
    first = publish(store, 1, "reward")
    store.pin(1, "reward", first)
    second = publish(store, 1, "reward")
    made = [publish(store, 1, "reward") for _ in range(5)]
    store.set_current(1, "reward", made[2])  # an operator switched back to an older one
    newest = publish(store, 1, "reward", make_current=False)
    kept = names(store, 1, "reward")
    assert kept == sorted([first, made[2], made[3], made[4], newest]), kept
    assert second not in kept and not (tmp_path / "1" / "reward" / second).exists()
    assert not list((tmp_path / "1" / "reward").glob(".deleted-*")), "deleted versions leave nothing behind"
    assert store.current(1)["reward"] == made[2]
    assert [v["pinned"] for v in store.versions(1, "reward")] == [True, False, False, False, False]
    store.pin(1, "reward", first, pinned=False)
    assert store.prune(1, "reward") == [first]


def test_retention_is_per_project_and_kind_and_zero_keeps_all(tmp_path):
    store = ArtifactStore(tmp_path, keep_versions=2)
    for _ in range(4):
        publish(store, 1, "reward")
        publish(store, 1, "policy")
        publish(store, 2, "reward")
    assert [len(names(store, p, k)) for p, k in ((1, "reward"), (1, "policy"), (2, "reward"))] == [2, 2, 2]
    keep_all = ArtifactStore(tmp_path / "all", keep_versions=0)
    for _ in range(7):
        publish(keep_all, 1, "reward")
    assert len(names(keep_all, 1, "reward")) == 7


def test_default_keeps_five(tmp_path):
    store = ArtifactStore(tmp_path)
    for _ in range(7):
        publish(store, 1, "policy")
    assert len(names(store, 1, "policy")) == 5


def test_odd_identifiers_never_reach_the_filesystem(tmp_path):
    store = ArtifactStore(tmp_path)
    publish(store, 1, "reward")
    for version in ("rm-" + "9" * 300, "rm-../../x", "pi-20260101", "rm-", "rm-a/b", "rm-\x00"):
        with pytest.raises(ModelNotFound):
            store.version_dir(1, "reward", version)
    for project in (10**300, 0, -1, True, "²", "1" * 11):
        with pytest.raises(BadRequest):
            store.current(project)
    (tmp_path / "²").mkdir()
    (tmp_path / ("1" * 200)).mkdir()
    assert store.projects() == [1]
