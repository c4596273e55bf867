"""The pongo2-subset renderer of image templates (``cove.model.pongo``): the
templates the images of LXD's image servers carry, rendered as LXD renders
them; pongo2's semantics where an image sees them; and every construct it
does not know, every limit, refused with an error naming the template."""

from __future__ import annotations

import time

import pytest

from cove.model.pongo import MAX_OUTPUT, TemplateError, function, render
from cove.model.templates import config_get

CONFIG = {"user.foo": "bar\n", "security.privileged": "false",
          "cloud-init.user-data": "#cloud-config\npackages: [vim]\n"}
META = {"name": "c1", "type": "container", "architecture": "x86_64",
        "privileged": "false", "ephemeral": "false"}


def ctx(**over: object) -> dict[str, object]:
    c: dict[str, object] = {
        "trigger": "create", "path": "/etc/hostname", "instance": META, "container": META,
        "config": CONFIG, "devices": {"eth0": {"type": "nic", "hwaddr": "00:16:3e:00:00:01"},
                                      "root": {"type": "disk", "path": "/"}},
        "properties": {"default": "#cloud-config\n{}\n"},
        "config_get": function(config_get(CONFIG), 2)}
    c.update(over)
    return c


# What images:ubuntu/noble/cloud and the other images of images.linuxcontainers.org
# carry (distrobuilder's generators), with what LXD renders for instance c1.
IMAGE_TEMPLATES = [
    ("{{ container.name }}\n", "c1\n"),
    (("127.0.1.1\t{{ container.name }}\n127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost "
     "ip6-loopback\n"), ("127.0.1.1\tc1\n127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost "
     "ip6-loopback\n")),
    (('#cloud-config\ninstance-id: {{ container.name }}\nlocal-hostname: {{ container.name }}\n'
     '{{ config_get("user.meta-data", "") }}\n'),
     "#cloud-config\ninstance-id: c1\nlocal-hostname: c1\n\n"),
    ('{{ config_get("cloud-init.user-data", properties.default) }}\n',
     "#cloud-config\npackages: [vim]\n"),
    ('{{ config_get("user.vendor-data", properties.default) }}\n', "#cloud-config\n{}\n\n"),
    (('{% if config_get("user.network-config", "") == "" %}version: 1\nconfig:\n'
     '  - type: physical\n    name: {% if instance.type == "virtual-machine" %}enp5s0'
     '{% else %}eth0{% endif %}\n    subnets:\n      - type: {% if config_get('
     '"user.network-mode", "") == "link-local" %}manual{% else %}dhcp{% endif %}\n'
     '        control: auto\n{% else %}{{ config_get("user.network-config", "") }}{% endif %}\n'),
     ("version: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets:\n"
     "      - type: dhcp\n        control: auto\n\n")),
    # distrobuilder's cloud-init generator (user-data, vendor-data, network-config)
    (('{%- if config_get("cloud-init.user-data", properties.default) == properties.default -%}\n'
     '{{ config_get("user.user-data", properties.default) }}\n{%- else -%}\n'
     '{{- config_get("cloud-init.user-data", properties.default) }}\n{%- endif %}\n'),
     "#cloud-config\npackages: [vim]\n"),
    (('{%- if config_get("cloud-init.vendor-data", properties.default) == properties.default -%}\n'
     '{{ config_get("user.vendor-data", properties.default) }}\n{%- else -%}\n'
     '{{- config_get("cloud-init.vendor-data", properties.default) }}\n{%- endif %}\n'),
     "#cloud-config\n{}\n\n"),  # the ctx's default ends in a newline
    (('{%- if config_get("cloud-init.network-config", "") == "" -%}\n'
     '{%- if config_get("user.network-config", "") == "" -%}\nversion: 1\nconfig:\n'
     '  - type: physical\n    name: {% if instance.type == "virtual-machine" %}enp5s0'
     '{% else %}eth0{% endif %}\n    subnets:\n      - type: dhcp\n        control: auto\n'
     '{%- else -%}\n{{- config_get("user.network-config", "") -}}\n{%- endif -%}\n'
     '{%- else -%}\n{{- config_get("cloud-init.network-config", "") -}}\n{%- endif %}\n'),
     ("version: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets:\n"
     "      - type: dhcp\n        control: auto\n")),
    # LXD's own test image (test/deps/import-busybox --template)
    (('name: {{ container.name }}\narchitecture: {{ container.architecture }}\n'
     'privileged: {{ container.privileged }}\nephemeral: {{ container.ephemeral }}\n'
     'trigger: {{ trigger }}\npath: {{ path }}\n'
     'user.foo: {{ config_get("user.foo", "_unset_") }}\n'),
     ("name: c1\narchitecture: x86_64\nprivileged: false\nephemeral: false\n"
     "trigger: create\npath: /etc/hostname\nuser.foo: bar\n")),
]


@pytest.mark.parametrize(("source", "want"), IMAGE_TEMPLATES)
def test_image_server_templates(source: str, want: str) -> None:
    assert render(source, ctx(), name="t.tpl") == want


@pytest.mark.parametrize(("source", "want"), [
    ("{{ missing }}|{{ config.nope }}|{{ devices.eth0.nope.deeper }}", "||"),
    ('{{ config["user.foo"]|upper }}', "BAR\n"),  # config is raw; config_get trims
    (("{% for name, dev in devices %}{{ forloop.Counter }}:{{ name }}={{ dev.type }} "
     "{% endfor %}"), "1:eth0=nic 2:root=disk "),  # maps iterate in key order
    ("{% for k in devices reversed %}{{ k }}{% if not forloop.Last %},{% endif %}{% endfor %}",
     "root,eth0"),
    ("{% for x in nothing %}x{% empty %}none{% endfor %}", "none"),
    (("{{ true }} {{ 1 == 1.0 }} {{ '1' == 1 }} {{ 7 / 2 }} {{ -7 / 2 }} {{ 2 * 3 + 1 }} "
     "{{ 7 % 3 }}"), "True True False 3 -3 7 1"),
    (("{% if 'eth0' in devices and 'ba' in config_get('user.foo', '') %}y{% endif %}"
     "{% if 'x' not in devices %}n{% endif %}{% if 1 < 2 && !false || x %}o{% endif %}"), "yno"),
    (("{% if a %}A{% elif trigger == 'copy' %}B{% elif trigger == 'create' %}C"
     "{% else %}D{% endif %}"), "C"),
    (("{{ nope|default:'d' }} {{ ''|default_if_none:'x' }} {{ 'a b'|title }} "
     "{{ devices|length }} {{ 'a,b'|split:','|join:'+' }} {{ 'x'|add:'y' }} {{ 1|add:2 }} "
     "{{ '<b>'|escape }} {{ '<b>'|safe }} {{ '12'|integer + 1 }} {{ 'abcdef'|truncatechars:5 }}"),
     "d  A B 2 a+b xy 3 &lt;b&gt; <b> 13 ab..."),
    ("a  {{- 'x' -}}  b {# a comment #} {%- if true %} c{% endif -%}\n\n d", "axb  cd"),
    ("{% autoescape on %}{{ '<' }}{% endautoescape %}{% comment %}{{ x }}{% endcomment %}",
     "<"),
    ('{{ "quote \\" and \\\\ and \\n" }}', 'quote " and \\ and \n'),
])
def test_pongo2_semantics(source: str, want: str) -> None:
    assert render(source, ctx(), name="t.tpl") == want


def test_config_get_default_is_any_value_and_values_lose_trailing_newlines() -> None:
    assert render("[{{ config_get('user.foo', 1) }}][{{ config_get('user.x', 1) + 1 }}]",
                  ctx()) == "[bar][2]"


@pytest.mark.parametrize(("source", "words"), [
    ("{% include 'hosts.tpl' %}", "'include' is not allowed"),
    ("{% extends 'x' %}", "'extends' is not allowed"),
    ("{% import 'x' f %}", "'import' is not allowed"),
    ("{% ssi '/etc/shadow' %}", "'ssi' is not allowed"),
    ("{% set x = 1 %}", "unknown tag 'set'"),
    ("{% now %}", "unknown tag 'now'"),
    ("line1\n{{ x|shell }}", "line 2: unknown filter 'shell'"),
    ("{% if x %}open", "missing {% endif %}"),
    ("{% endif %}", "unexpected {% endif %}"),
    ("{{ x", "unclosed {{"),
    ("{{ }}", "empty {{ }}"),
    ("{{ a b }}", "unexpected 'b'"),
    ("{{ 'a' + 1 }}", "+ wants numbers or two strings"),
    ("{{ 1 / 0 }}", "division by zero"),
    ("{{ 'a' < 1 }}", "compares two numbers or two strings"),
    ("{{ config('x') }}", "only the template functions"),
    ("{{ config_get('x') }}", "takes 2 arguments, got 1"),
    ("{{ instance.name.__class__ }}", None),  # a key lookup, never an attribute: nothing
    ("{% for in x %}{% endfor %}", "for needs"),
    ("{{ " + "(" * 80 + "1" + ")" * 80 + " }}", "nested too deeply"),
    ("{{ 9999999999 * 9999999999 }}", "integer overflow"),
])
def test_unknown_constructs_fail_naming_the_template(source: str, words: str | None) -> None:
    if words is None:
        assert render(source, ctx(), name="hosts.tpl") == ""
        return
    with pytest.raises(TemplateError) as err:
        render(source, ctx(), name="hosts.tpl")
    assert "template hosts.tpl" in str(err.value)
    assert words in str(err.value)
    assert err.value.status == 400


@pytest.mark.parametrize("source", [
    # quadratic loops over a long string: the step budget
    "{% for a in s %}{% for b in s %}{{ a }}{% endfor %}{% endfor %}",
    # a string doubling at each filter: the value cap
    "{{ s" + "|addslashes" * 40 + " }}",
])
def test_hostile_templates_stop_quickly(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError, match="steps|larger than"):
        render(source, {"s": "\\" * 5000}, name="bomb.tpl")
    assert time.monotonic() - started < 5


def test_output_limit() -> None:
    big = "x" * (MAX_OUTPUT // 4 + 1)
    with pytest.raises(TemplateError, match="larger than"):
        render("{{ s }}{{ s }}{{ s }}{{ s }}", {"s": big}, name="big.tpl")
