"""The Compose loader (``cove.model.compose`` and ``compose_text``): each
supported key and what it becomes, each refused one with its line."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from cove.model.compose import (
    StackPlan,
    bridge_name,
    normalize_stack_name,
    plan_stack,
    solve_levels,
)
from cove.model.compose_text import interpolate, load_yaml, parse_dotenv
from cove.model.config import validate_config
from cove.model.errors import BadRequest


def plan(text: str, *, env: dict[str, str] | None = None,
         files: dict[str, str] | None = None) -> StackPlan:
    doc, lines = load_yaml(textwrap.dedent(text))

    def read(path: str) -> str:
        try:
            return (files or {})[path]
        except KeyError:
            raise BadRequest(f"{path}: no such file") from None

    return plan_stack(doc, name=None, lines=lines, env=env or {}, base_dir="/srv/app",
                      read_env_file=read)


def refused(text: str, **kw: Any) -> str:
    with pytest.raises(BadRequest) as e:
        plan(text, **kw)
    return str(e.value)


def test_a_full_service_maps_to_cove_keys_and_devices() -> None:
    p = plan("""\
        name: Demo_App
        services:
          db:
            image: busybox
            entrypoint: /bin/sh -c
            command: ["echo hi; sleep 100"]
            environment:
              A: 1
              B: true
              C:
            env_file: db.env
            working_dir: /srv
            user: "1000:50"
            healthcheck:
              test: ["CMD-SHELL", "nc -z localhost 5432"]
              interval: 2s
              timeout: 1s
              retries: 4
              start_period: 1m30s
              start_interval: 500ms
            restart: on-failure:3
            stop_signal: SIGINT
            stop_grace_period: 1m
            hostname: database
            labels: {com.example.tier: data}
            volumes:
              - data:/var/lib/db:ro
              - ./conf:/etc/db
              - type: bind
                source: /opt/x
                target: /x
                read_only: true
            ports:
              - "5432:5432"
              - target: 53
                published: 5353
                host_ip: 127.0.0.1
                protocol: udp
          web:
            image: busybox
            depends_on:
              db: {condition: service_healthy, restart: true}
            networks: [front, default]
        networks:
          front: {}
        volumes:
          data: {}
        """, env={"C": "from-env"}, files={"/srv/app/db.env": "# x\nD=4\nexport E='5 6'\n"})
    assert p.name == "demo-app"
    assert [s.name for s in p.services] == ["db", "web"]
    assert p.levels == (("db",), ("web",))
    db = p.service("db")
    assert db.instance == "demo-app-db"
    c = db.config
    assert c["cove.cmd"] == "/bin/sh -c 'echo hi; sleep 100'"
    assert {k: v for k, v in c.items() if k.startswith("environment.")} == {
        "environment.A": "1", "environment.B": "true", "environment.C": "from-env",
        "environment.D": "4", "environment.E": "5 6"}
    assert c["cove.cwd"] == "/srv" and c["cove.uid"] == "1000" and c["cove.gid"] == "50"
    assert c["cove.health"] == "sh -c 'nc -z localhost 5432'"
    assert (c["cove.health.interval"], c["cove.health.timeout"], c["cove.health.retries"],
            c["cove.health.start_period"], c["cove.health.start_interval"]) == \
        ("2s", "1s", "4", "1m30s", "500ms")
    assert c["cove.restart"] == "on-failure:3"
    assert c["cove.halt"] == "SIGINT"
    assert c["user.cove.stop_timeout"] == "60"
    assert c["cove.hostname"] == "database" and c["cove.dns.aliases"] == "db,database"
    assert c["user.com.example.tier"] == "data"
    assert c["user.cove.stack"] == "demo-app" and c["user.cove.service"] == "db"
    assert c["user.cove.hash"] == db.digest and len(db.digest) == 16
    assert c["user.cove.volumes"] == "demo-app-data"
    validate_config(c)  # every key is one coved accepts
    assert db.devices == {
        "eth0": {"type": "nic", "network": "demo-app", "name": "eth0"},
        "volume0": {"type": "disk", "pool": "default", "source": "demo-app-data",
                    "path": "/var/lib/db", "readonly": "true"},
        "volume1": {"type": "disk", "source": "/srv/app/conf", "path": "/etc/db"},
        "volume2": {"type": "disk", "source": "/opt/x", "path": "/x", "readonly": "true"},
        "proxy-tcp-5432": {"type": "proxy", "listen": "tcp:0.0.0.0:5432",
                           "connect": "tcp:0.0.0.0:5432", "nat": "true"},
        "proxy-udp-127.0.0.1-5353": {"type": "proxy", "listen": "udp:127.0.0.1:5353",
                                     "connect": "udp:0.0.0.0:53", "nat": "true"},
    }
    web = p.service("web")
    assert web.config["cove.depends"] == "demo-app-db:healthy:restart"
    assert web.depends == ("demo-app-db",)
    assert web.devices["eth0"]["network"] == "demo-app-front"
    assert web.devices["eth1"]["network"] == "demo-app"
    assert web.config["user.cove.networks"] == "demo-app,demo-app-front"
    assert [n.name for n in p.networks] == ["demo-app", "demo-app-front"]
    assert [v.name for v in p.volumes] == ["demo-app-data"]


@pytest.mark.parametrize(("cond", "want"), [
    ("service_started", "s-db:started"), ("service_healthy", "s-db:healthy"),
    ("service_completed_successfully", "s-db:completed")])
def test_depends_on_conditions(cond: str, want: str) -> None:
    p = plan(f"""\
        name: s
        services:
          db: {{image: busybox, healthcheck: {{test: "true"}}}}
          app:
            image: busybox
            depends_on: {{db: {{condition: {cond}}}}}
        """)
    assert p.service("app").config["cove.depends"] == want


def test_depends_on_list_is_started_and_levels_run_in_parallel() -> None:
    p = plan("""\
        name: s
        services:
          a: {image: busybox}
          b: {image: busybox}
          c: {image: busybox, depends_on: [a, b]}
          d: {image: busybox, depends_on: [c]}
          e: {image: busybox, depends_on: [a]}
        """)
    assert p.service("c").config["cove.depends"] == "s-a:started,s-b:started"
    assert p.levels == (("a", "b"), ("c", "e"), ("d",))


def test_healthcheck_forms() -> None:
    def health(test: str) -> dict[str, str]:
        p = plan(f"name: s\nservices:\n  a:\n    image: busybox\n    healthcheck:\n"
                 f"      test: {test}\n")
        return {k: v for k, v in p.service("a").config.items() if k.startswith("cove.health")}

    assert health("[CMD, pg_isready, -q]") == {"cove.health": "pg_isready -q"}
    assert health("wget -q -O- localhost") == {"cove.health": "sh -c 'wget -q -O- localhost'"}
    assert health("[NONE]") == {}
    p = plan("name: s\nservices:\n  a:\n    image: busybox\n    healthcheck:\n"
             "      test: [CMD, 'true']\n      disable: true\n")
    assert "cove.health" not in p.service("a").config


def test_names_come_from_p_env_file_then_folder() -> None:
    doc, lines = load_yaml("name: fromfile\nservices: {a: {image: busybox}}\n")
    assert plan_stack(doc, name="Cli", lines=lines).name == "cli"
    assert plan_stack(doc, name=None, env={"COMPOSE_PROJECT_NAME": "env"}).name == "env"
    assert plan_stack(doc, name=None).name == "fromfile"
    doc2, _ = load_yaml("services: {a: {image: busybox}}\n")
    assert plan_stack(doc2, name=None, base_dir="/x/My.Project").name == "my-project"
    assert normalize_stack_name("a_b.c") == "a-b-c"
    with pytest.raises(BadRequest, match="at most 40"):
        normalize_stack_name("a" * 41)
    long = plan_stack(doc2, name="a-rather-long-project-name")
    assert long.service("a").instance == "a-rather-long-project-name-a"
    assert long.networks[0].name == bridge_name("a-rather-long-project-name")
    assert len(long.networks[0].name) == 15 and long.networks[0].name.startswith("a-rather-l")
    with pytest.raises(BadRequest, match="starting with a letter"):
        normalize_stack_name("_")


def test_interpolation_as_compose() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("$SET ${SET} $$SET ${NOPE} x${NOPE:-d}y", env) == "v v $SET  xdy"
    assert interpolate("${EMPTY:-d} ${EMPTY-d} ${SET:+alt} ${NOPE+alt}", env) == "d  alt "
    assert interpolate("${NOPE:-${SET}}", env) == "v"
    assert interpolate({"k$SET": ["$SET", 3]}, env) == {"k$SET": ["v", 3]}
    with pytest.raises(BadRequest, match="required variable NOPE is missing a value: say it"):
        interpolate("${NOPE:?say it}", env)
    with pytest.raises(BadRequest, match="required variable EMPTY"):
        interpolate("${EMPTY:?}", env)
    assert interpolate("${EMPTY?}", env) == ""
    with pytest.raises(BadRequest, match="invalid interpolation"):
        interpolate("${1BAD}", env)


def test_interpolation_in_the_file_names_the_line() -> None:
    msg = refused("name: s\nservices:\n  a:\n    image: ${IMG:?set IMG}\n")
    assert msg.startswith("services.a.image (line 4): required variable IMG")
    p = plan("name: s\nservices:\n  a:\n    image: ${IMG}\n", env={"IMG": "busybox"})
    assert p.service("a").image == "busybox"


def test_dotenv() -> None:
    text = ("# comment\n\nA=1\nexport B = two words # comment\nC='lit $A #x'\n"
            'D="q\\n$A"\nE\nF=${A}${G:-g}\n')
    assert parse_dotenv(text, ".env", {"E": "from-env"}) == {
        "A": "1", "B": "two words", "C": "lit $A #x", "D": "q\n1", "E": "from-env",
        "F": "1g"}
    with pytest.raises(BadRequest, match=r"\.env line 2: expected KEY=VALUE"):
        parse_dotenv("A=1\n=x\n", ".env")


@pytest.mark.parametrize(("text", "words"), [
    ("name: s\nservices:\n  a:\n    image: busybox\n    build: .\n",
     "services.a.build (line 5): not supported by cove"),
    ("name: s\nservices:\n  a:\n    image: busybox\n    privileged: true\n",
     "services.a.privileged (line 5): not supported"),
    ("name: s\nsecrets: {}\nservices:\n  a: {image: busybox}\n", "secrets (line 2)"),
    (("name: s\nservices:\n  a:\n    image: busybox\n    healthcheck:\n      test: 'true'\n"
     "      interval: soon\n"), "services.a.healthcheck.interval (line 7): Invalid"),
    ("name: s\nservices:\n  a:\n    image: busybox\n    stop_grace_period: 1y\n",
     "services.a.stop_grace_period (line 5)"),
    ("name: s\nservices:\n  a:\n    image: busybox\n    restart: sometimes\n",
     "services.a.restart (line 5)"),
    ("name: s\nservices:\n  a:\n    image: busybox\n    stop_signal: SIGNOPE\n",
     "services.a.stop_signal (line 5)"),
    ("name: s\nservices:\n  a:\n    image: busybox\n    depends_on: [b]\n",
     "services.a.depends_on (line 5): 'b' is not a service"),
    (("name: s\nservices:\n  a:\n    image: busybox\n    depends_on:\n      b:\n"
     "        condition: service_ready\n  b: {image: busybox}\n"),
     "services.a.depends_on.b.condition (line 7)"),
    (("name: s\nservices:\n  a:\n    image: busybox\n    depends_on:\n      b:\n"
     "        condition: service_healthy\n  b: {image: busybox}\n"),
     "'b' has no healthcheck"),
    ("name: s\nservices:\n  a:\n    image: busybox\n    ports: ['80']\n",
     "services.a.ports[0] (line 5): '80' has no host port"),
    ("name: s\nservices:\n  a:\n    image: busybox\n    ports: ['x:80']\n",
     "services.a.ports[0] (line 5): Invalid publish"),
    ("name: s\nservices:\n  a:\n    image: busybox\n    volumes: [/data]\n",
     "anonymous volumes are not supported"),
    ("name: s\nservices:\n  a:\n    image: busybox\n    volumes: ['v:/data']\n",
     "services.a.volumes[0] (line 5): the volume 'v' is not declared"),
    (("name: s\nservices:\n  a:\n    image: busybox\n    volumes: ['v:data']\n"
     "volumes: {v: {}}\n"), "is not an absolute path"),
    ("name: s\nservices:\n  a:\n    image: busybox\n    networks: [back]\n",
     "'back' is not declared"),
    (("name: s\nservices:\n  a:\n    image: busybox\n    networks:\n      default:\n"
     "        aliases: [x]\n"), "services.a.networks.default.aliases (line 7)"),
    ("name: s\nservices:\n  a:\n    command: x\n", "services.a (line 3): no image"),
    ("name: s\nservices:\n  Bad_Name: {image: busybox}\n", "services.Bad_Name (line 3)"),
    ("name: s\nservices:\n  a:\n    image: busybox\n    working_dir: srv\n",
     "services.a.working_dir (line 5): must be an absolute path"),
    ("name: s\nservices:\n  a:\n    image: busybox\n    env_file: missing.env\n",
     "services.a.env_file (line 5): /srv/app/missing.env: no such file"),
    ("name: s\nnetworks:\n  n: {driver: overlay}\nservices:\n  a: {image: busybox}\n",
     "networks.n.driver (line 3)"),
    ("name: s\nservices: {}\n", "at least one service"),
    ("name: s\nservices:\n  a: {image: busybox}\n  a: {image: busybox}\n",
     "services.a (line 4): the key is given twice"),
    ("name: s\nservices:\n  a: [image\n", "Invalid YAML in compose file at line"),
])
def test_refused_with_key_and_line(text: str, words: str) -> None:
    assert words in refused(text)


def test_cycles_are_named() -> None:
    msg = refused("name: s\nservices:\n  a: {image: i, depends_on: [b]}\n"
                  "  b: {image: i, depends_on: [c]}\n  c: {image: i, depends_on: [a]}\n")
    assert msg == "Dependency cycle: a -> b -> c -> a"
    with pytest.raises(BadRequest, match="Dependency cycle: x -> x"):
        solve_levels({"x": ["x"]})
    with pytest.raises(BadRequest, match="'y', which is not a service"):
        solve_levels({"x": ["y"]})


def test_optional_env_file_and_required_false() -> None:
    p = plan("name: s\nservices:\n  a:\n    image: busybox\n    env_file:\n"
             "      - path: none.env\n        required: false\n")
    assert not [k for k in p.service("a").config if k.startswith("environment.")]


def test_the_hash_follows_the_definition_only() -> None:
    base = "name: s\nservices:\n  a:\n    image: busybox\n    environment: {X: '1'}\n"
    one, two = plan(base), plan(base)
    assert one.service("a").digest == two.service("a").digest
    other = plan(base.replace("'1'", "'2'"))
    assert other.service("a").digest != one.service("a").digest


def test_extension_fields_anchors_and_merge_keys() -> None:
    p = plan("""\
        name: s
        x-base: &base
          image: busybox
          restart: always
        services:
          a:
            <<: *base
            x-note: ignored
            restart: "no"
        """)
    assert p.service("a").image == "busybox"
    assert p.service("a").config["cove.restart"] == "no"


def test_a_user_name_is_left_to_resolve_in_the_image() -> None:
    p = plan("name: s\nservices:\n  a:\n    image: busybox\n    user: app:staff\n")
    a = p.service("a")
    assert (a.user, a.group) == ("app", "staff")
    assert "cove.uid" not in a.config


def test_yaml_scalars_as_compose_reads_them() -> None:
    """YAML 1.2 as Compose's parser: no base-60 ports, ``no`` is a string."""
    p = plan("name: s\nservices:\n  a:\n    image: busybox\n    restart: no\n"
             "    ports: [5432:22]\n    environment: {A: yes, B: on, C: true, D: 012}\n")
    a = p.service("a")
    assert a.config["cove.restart"] == "no"
    assert a.devices["proxy-tcp-5432"]["connect"] == "tcp:0.0.0.0:22"
    assert (a.config["environment.A"], a.config["environment.B"], a.config["environment.C"],
            a.config["environment.D"]) == ("yes", "on", "true", "012")


def test_only_the_networks_and_volumes_services_use_are_made() -> None:
    doc, lines = load_yaml(
        "name: s\nservices:\n  a:\n    image: busybox\n    networks: [front]\n"
        "    volumes: ['data:/d']\n"
        "networks:\n  front: {}\n  spare: {}\n  ext: {external: true}\n"
        "volumes:\n  data: {}\n  spare: {}\n  ext: {external: true}\n")
    p = plan_stack(doc, name=None, lines=lines)
    assert [n.name for n in p.networks] == ["s-front"]  # no default, spare or external one
    assert [v.name for v in p.volumes] == ["s-data"]
    doc, lines = load_yaml("name: s\nservices:\n  a: {image: busybox}\n"
                           "networks:\n  ext: {external: true}\n")
    assert [n.name for n in plan_stack(doc, name=None, lines=lines).networks] == ["s"]


def test_entrypoint_and_command_as_the_spec() -> None:
    def svc(body: str) -> Any:
        doc, lines = load_yaml(f"name: s\nservices:\n  a:\n    image: busybox\n{body}")
        return plan_stack(doc, name=None, lines=lines).service("a")

    a = svc("    command: \"sleep '5'\"\n")  # a string is split as a shell does, not run by one
    assert (a.config["cove.cmd"], a.args) == ("sleep 5", ("sleep", "5"))
    a = svc("    command: []\n")  # the image's command dropped: its entrypoint alone
    assert "cove.cmd" not in a.config and a.args == ()
    a = svc("    entrypoint: [sleep]\n    command: ['1']\n")
    assert (a.config["cove.cmd"], a.args) == ("sleep 1", None)
    for reset in ("[]", "''"):
        a = svc(f"    entrypoint: {reset}\n    command: sleep 2\n")
        assert (a.config["cove.cmd"], a.args) == ("sleep 2", None)
        with pytest.raises(BadRequest, match=r"services\.a\.entrypoint \(line 5\): an empty "):
            svc(f"    entrypoint: {reset}\n")
    assert svc("").args is None and "cove.cmd" not in svc("").config
