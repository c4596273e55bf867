"""Applying an image's templates to an instance's root (``engine._templates``)
on real directories and a real store, the image store faked: which rules
each trigger renders, the pending key, LXD's file modes and owners, and the
hostile set (targets and templates that climb, symlinked targets and
parents, symlinked template files), which write nothing anywhere."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cove.engine._templates import apply_at_start, defer
from cove.model.errors import BadRequest
from cove.model.records import Instance
from cove.model.templates import TRIGGER_KEY, parse_rules
from cove.store import Store

RULES = {
    "/etc/hostname": {"when": ["create", "copy", "rename"], "template": "hostname.tpl"},
    "/etc/hosts": {"when": ["create", "copy"], "template": "hosts.tpl"},
    "/etc/motd": {"when": ["create"], "template": "motd.tpl", "create_only": True},
    "/var/lib/cloud/seed/nocloud-net/meta-data": {
        "when": ["create", "copy"], "template": "meta.tpl",
        "properties": {"default": "#cloud-config\n{}"}},
    "/copied": {"when": ["copy"], "template": "copied.tpl"},
    "/started": {"when": ["start"], "template": "started.tpl"},
}
TEMPLATES = {
    "hostname.tpl": "{{ container.name }}\n",
    "hosts.tpl": "127.0.1.1\t{{ instance.name }}\n127.0.0.1\tlocalhost\n",
    "motd.tpl": "welcome to {{ instance.name }}\n",
    "meta.tpl": "instance-id: {{ instance.name }}\n"
                "{{ config_get('user.meta-data', properties.default) }}\n",
    "copied.tpl": "copy of {{ instance.name }} ({{ trigger }})\n",
    "started.tpl": "{{ trigger }} {{ path }} {{ config_get('user.foo', '_unset_') }} "
                   "{{ instance.privileged }} {{ devices.eth0.type }}\n",
}


class FakeImages:
    """``TemplateFiles`` over a directory laid out as the image store's."""

    def __init__(self, image_dir: Path) -> None:
        self.dir = image_dir

    def template_files(self, fingerprint: str) -> tuple[bytes | None, Path | None]:
        meta = self.dir / "metadata.yaml"
        tpl = self.dir / "templates"
        return (meta.read_bytes() if meta.exists() else None,
                tpl if tpl.is_dir() else None)


class FakeProfiles:
    def expanded_config(self, inst: Instance) -> dict[str, str]:
        return {"security.privileged": "true", **inst.config}

    def expanded_devices(self, inst: Instance) -> dict[str, dict[str, str]]:
        return {"eth0": {"type": "nic", "network": "covebr0"}, **inst.devices}


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.store = Store(tmp / "cove.db")
        self.image = tmp / "image"
        self.root = tmp / "rootfs"
        self.outside = tmp / "outside"
        for d in (self.image / "templates", self.root / "etc", self.outside):
            d.mkdir(parents=True)
        self.images = FakeImages(self.image)
        self.set_image(RULES, TEMPLATES)

    def set_image(self, rules: dict[str, object], templates: dict[str, str]) -> None:
        (self.image / "metadata.yaml").write_text(yaml.safe_dump(
            {"architecture": "x86_64", "templates": rules}))
        for name, text in templates.items():
            (self.image / "templates" / name).write_text(text)

    def add(self, name: str = "c1", trigger: str = "create",
            config: dict[str, str] | None = None) -> Instance:
        inst = Instance(name=name, image="f" * 64, config={**(config or {}),
                                                           TRIGGER_KEY: trigger})
        self.store.add_instance(inst)
        return self.store.get_instance(name)

    def start(self, name: str = "c1") -> None:
        apply_at_start(self.store, self.images, FakeProfiles(), self.store.get_instance(name),
                       self.root)

    def read(self, path: str) -> str:
        return (self.root / path.lstrip("/")).read_text()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.store.close()


def test_create_renders_its_rules_then_start_ones_and_clears_the_key(env: Env) -> None:
    env.add(config={"user.foo": "bar"})
    env.start()
    assert env.read("/etc/hostname") == "c1\n"
    assert env.read("/etc/hosts") == "127.0.1.1\tc1\n127.0.0.1\tlocalhost\n"
    assert env.read("/etc/motd") == "welcome to c1\n"
    assert env.read("/var/lib/cloud/seed/nocloud-net/meta-data") == \
        "instance-id: c1\n#cloud-config\n{}\n"
    assert not (env.root / "copied").exists()  # a copy rule: not on create
    assert env.read("/started") == "start /started bar true nic\n"
    assert TRIGGER_KEY not in env.store.get_instance("c1").config
    # the next start renders the start rules only
    (env.root / "etc" / "hostname").write_text("changed\n")
    env.start()
    assert env.read("/etc/hostname") == "changed\n"


def test_lxd_modes_and_owners(env: Env) -> None:
    hosts = env.root / "etc" / "hosts"
    hosts.write_text("old, longer than the new content\n")
    os.chmod(hosts, 0o600)
    os.chown(hosts, 1000, 1001)
    os.link(hosts, env.root / "hosts-link")
    motd = env.root / "etc" / "motd"
    motd.write_text("kept\n")  # create_only: an existing file stays
    env.add()
    env.start()
    st = hosts.stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, 1000, 1001)
    assert (env.root / "hosts-link").read_text() == env.read("/etc/hosts")  # in place
    assert motd.read_text() == "kept\n"
    new = env.root / "etc" / "hostname"
    assert (new.stat().st_mode & 0o7777, new.stat().st_uid) == (0o644, 0)
    for d in ("var", "var/lib", "var/lib/cloud/seed/nocloud-net"):
        assert (env.root / d).stat().st_mode & 0o7777 == 0o755


def test_copy_and_rename_triggers(env: Env) -> None:
    env.add("c2", trigger="copy")
    env.start("c2")
    assert env.read("/copied") == "copy of c2 (copy)\n"
    assert env.read("/etc/hostname") == "c2\n"
    assert not (env.root / "etc" / "motd").exists()
    env.store.rename_instance("c2", "c3")
    env.store.finish_rename("c3")
    defer(env.store, "c3", "rename")
    defer(env.store, "c3", "copy")  # a pending trigger stays (LXD's DeferTemplateApply)
    assert env.store.get_instance("c3").config[TRIGGER_KEY] == "rename"
    (env.root / "copied").unlink()
    env.start("c3")
    assert env.read("/etc/hostname") == "c3\n"
    assert not (env.root / "copied").exists()


def test_no_templates_no_writes(env: Env) -> None:
    (env.image / "metadata.yaml").write_text("architecture: x86_64\n")
    env.add()
    env.start()
    assert sorted(p.name for p in env.root.iterdir()) == ["etc"]
    assert TRIGGER_KEY not in env.store.get_instance("c1").config


def _hostile(env: Env, rule: dict[str, object], templates: dict[str, str] | None = None,
             words: str = "") -> None:
    (env.image / "metadata.yaml").write_text(yaml.safe_dump({"templates": rule}))
    for name, text in (templates or {}).items():
        (env.image / "templates" / name).write_text(text)
    env.add()
    with pytest.raises(BadRequest) as err:
        env.start()
    assert words in str(err.value)
    assert list(env.outside.iterdir()) == []


@pytest.mark.parametrize(("rule", "words"), [
    ({"/../../outside/x": {"when": ["create"], "template": "hostname.tpl"}}, "'..'"),
    ({"../outside/x": {"when": ["create"], "template": "hostname.tpl"}}, "'..'"),
    ({"/etc/x": {"when": ["create"], "template": "../../../etc/passwd"}}, "'..'"),
    ({"/etc/x": {"when": ["create"], "template": "/etc/passwd"}}, "must be a name"),
    ({"/etc/x": {"when": "create", "template": "hostname.tpl"}}, "list of triggers"),
    ({"/etc/x": {"when": ["create"]}}, "'template' must name"),
    ({"/etc/x": {"when": ["create"], "template": "absent.tpl"}}, "not in the image"),
    ({"/etc": {"when": ["create"], "template": "hostname.tpl"}}, "directory"),
])
def test_hostile_rules_are_refused(env: Env, rule: dict[str, object], words: str) -> None:
    _hostile(env, rule, words=words)
    assert sorted(p.name for p in env.root.iterdir()) == ["etc"]


def test_symlinked_target_or_parent_is_refused(env: Env) -> None:
    (env.root / "etc" / "hostname").symlink_to(env.outside / "hostname")  # absolute, out
    (env.root / "seed").symlink_to("../outside")  # a parent that climbs
    (env.root / "etc" / "hosts").symlink_to("shadow")  # relative, inside
    (env.root / "etc" / "shadow").write_text("root:x\n")
    for path, words in (("/etc/hostname", "/etc/hostname is a symbolic link"),
                        ("/seed/meta-data", "/seed is a symbolic link"),
                        ("/etc/hosts", "/etc/hosts is a symbolic link")):
        _hostile(env, {path: {"when": ["create"], "template": "hostname.tpl"}},
                 words=f"Template {path}: {words}")
        env.store.delete_instance("c1")
    assert (env.root / "etc" / "shadow").read_text() == "root:x\n"


def test_symlinked_template_file_is_refused(env: Env) -> None:
    secret = env.outside.parent / "host-secret"
    secret.write_text("host only\n")
    (env.image / "templates" / "leak.tpl").symlink_to(secret)
    _hostile(env, {"/etc/leak": {"when": ["create"], "template": "leak.tpl"}},
             words="template file leak.tpl is a symbolic link")
    assert not (env.root / "etc" / "leak").exists()


def test_a_template_that_does_not_render_leaves_the_target(env: Env) -> None:
    (env.root / "etc" / "hostname").write_text("old\n")
    _hostile(env, {"/etc/hostname": {"when": ["create"], "template": "bad.tpl"}},
             {"bad.tpl": "{% include '/etc/shadow' %}"},
             words="Template /etc/hostname: template bad.tpl, line 1: tag 'include'")
    assert env.read("/etc/hostname") == "old\n"
    # the key stays pending: fixing the image (or the key) lets it start
    assert env.store.get_instance("c1").config[TRIGGER_KEY] == "create"


def test_parse_rules_sorts_and_keeps_unknown_triggers() -> None:
    rules = parse_rules({"templates": {"/b": {"when": ["boot"], "template": "b.tpl"},
                                       "a": {"when": ["create"], "template": "a.tpl",
                                             "properties": {"n": 1, "t": True}}}})
    assert [(r.path, r.target, r.when) for r in rules] == \
        [("/b", "/b", ("boot",)), ("a", "/a", ("create",))]
    assert rules[1].properties == {"n": "1", "t": "true"}


def test_context_of_an_instance_of_a_project(env: Env) -> None:
    env.set_image({"/etc/hostname": {"when": ["create"], "template": "ctx.tpl"}},
                  {"ctx.tpl": "{{ instance.name }} {{ container.architecture }} "
                              "{{ instance.ephemeral }} {{ instance.type }} {{ trigger }}"})
    env.store.add_instance(Instance(name="dev_web", image="f" * 64, ephemeral=True,
                                    architecture="aarch64", project="dev",
                                    config={TRIGGER_KEY: "create"}))
    env.start("dev_web")
    # the plain name (LXD's d.name), not cove's key
    assert env.read("/etc/hostname") == "web aarch64 true container create"
