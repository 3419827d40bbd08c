"""Flags whose value is a small dict of settings, read into typed values for the library.

``--expert-params`` and ``--train-overrides`` (settings that differ per expert, or any `qbc
train` setting) are :data:`KeyValues`: ``KEY=VALUE`` pairs, each VALUE read as a JSON scalar
(``gain_scale=0.8`` -> 0.8, ``algo=td3`` -> "td3", ``noise_std=null`` -> None) and else kept as
text, or one JSON object as before (``'{"gain_scale": 0.8}'``); both forms may be mixed, later
keys win. :func:`key_values` turns them into the dict the library takes.

A field typed ``Literal[...]`` of strings lists its choices in ``--help`` (``{a,b,c}``); a value
outside them reaches the library, whose check refuses it with its own message.

``--obs-encoder`` has a fixed set of fields, so it is read straight into the library's
:class:`~qbc.policy.obs_encoder.ObsEncoderConfig` by a tyro rule (:data:`REGISTRY`):
``--obs-encoder k=16 bits=2 [quantizer=uniform] [seed=0]`` or the spec string
``--obs-encoder qrp:k=16,bits=2``; ``none`` (the default) is no encoder.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import tyro
from tyro.constructors import ConstructorRegistry, PrimitiveConstructorSpec, PrimitiveTypeInfo

from qbc.cli.lists import KeepCommas
from qbc.errors import InvalidValueError
from qbc.policy.obs_encoder import obs_encoder_config

if TYPE_CHECKING:
    from qbc.policy.obs_encoder import ObsEncoderConfig

#: A flag of KEY=VALUE pairs (or JSON objects); its values keep their commas.
KeyValues = Annotated[tuple[str, ...], KeepCommas,
                    tyro.conf.arg(metavar="KEY=VALUE|JSON", help_behavior_hint="(default: none)")]


def key_values(values: str | Sequence[str] | Mapping[str, Any], flag: str) -> dict[str, Any]:
    """The dict of a :data:`KeyValues` flag: ``("gain=0.5", "algo=td3")`` ->
    ``{"gain": 0.5, "algo": "td3"}``; a JSON object item is merged whole. A plain string is one
    item (the old JSON text of a config built in Python), a mapping is copied."""
    if isinstance(values, Mapping):
        return dict(values)
    out: dict[str, Any] = {}
    for item in [values] if isinstance(values, str) else values:
        text = str(item).strip()
        if text.startswith(("{", "[")) or "=" not in text:
            out.update(_json_object(text, flag))
            continue
        key, _, value = text.partition("=")
        if not key.strip():
            raise InvalidValueError(f"{flag} {text!r} has no name before '='; pass KEY=VALUE")
        out[key.strip()] = _scalar(value)
    return out


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # malformed, a number of thousands of digits
        raise InvalidValueError(
            f"{flag} is not valid JSON ({str(exc).splitlines()[0]}): {text[:200]!r}; pass "
            """KEY=VALUE pairs (algo=td3 gain_scale=0.8) or an object like """
            """'{"algo": "td3"}'""") from None
    if not isinstance(value, dict):
        raise InvalidValueError(f"{flag} must be a JSON object or KEY=VALUE pairs, got {text!r}")
    return value


def _scalar(text: str) -> Any:
    """``text`` as JSON (numbers, true/false/null, quoted text, lists), else as it is."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON (or a number of thousands of digits)
        return text


def expert_params(values: str | Sequence[str] | Mapping[str, Any],
                  path: str | None = None) -> dict[str, Any]:
    """``--expert-params`` plus ``--expert-path`` (under ``path``) as ``make_expert`` keywords."""
    params = key_values(values, "--expert-params")
    if path is not None:
        params["path"] = str(path)
    return params


# -- --obs-encoder -------------------------------------------------------------------------------
def _obs_encoder_from_args(args: list[str]) -> ObsEncoderConfig | None:
    """``["qrp:k=16,bits=2"]``, ``["k=16", "bits=2"]``, ``["qrp", "k=16"]``, ``["none"]`` or
    ``[]`` (none) -> the typed encoder settings (checked)."""
    items = [a for arg in args for a in arg.split(",") if a.strip()]
    if not items or items == ["none"]:
        return None
    kind = "qrp"
    head, colon, first = items[0].partition(":")
    if colon or "=" not in head:  # the spec form, or a bare type name
        kind, items = head, ([first] if first else []) + items[1:]
    return obs_encoder_config(f"{kind}:{','.join(items)}")


def _obs_encoder_text(enc: ObsEncoderConfig | None) -> list[str]:
    return ["none"] if enc is None else [enc.spec()]


#: tyro rules of the typed flags that are not plain dataclass fields (passed to ``tyro.cli``).
REGISTRY = ConstructorRegistry()


@REGISTRY.primitive_rule
def _obs_encoder_rule(info: PrimitiveTypeInfo) -> PrimitiveConstructorSpec | None:
    # A config holding ObsEncoderConfig has imported its module; the other commands do not
    # pay for importing it (and torch) here.
    encoder = getattr(sys.modules.get("qbc.policy.obs_encoder"), "ObsEncoderConfig", None)
    if encoder is None or info.type not in (encoder, encoder | None):
        return None
    return PrimitiveConstructorSpec(
        nargs="*", metavar="KEY=VALUE|SPEC", instance_from_str=_obs_encoder_from_args,
        is_instance=lambda v: v is None or isinstance(v, encoder),
        str_from_instance=_obs_encoder_text)


@REGISTRY.primitive_rule
def _choices_rule(info: PrimitiveTypeInfo) -> PrimitiveConstructorSpec | None:
    # A field typed Literal["a", "b"] (--select-by, --model.head, ...): --help lists the
    # choices as {a,b}, and any other text is handed to the library, whose check of the
    # settings refuses it with its own message, the same one a Python caller gets.
    choices = get_args(info.type) if info.type_origin is Literal else ()
    if not choices or not all(isinstance(c, str) for c in choices):
        return None
    return PrimitiveConstructorSpec(
        nargs=1, metavar="{" + ",".join(choices) + "}", instance_from_str=lambda args: args[0],
        is_instance=lambda v: isinstance(v, str), str_from_instance=lambda v: [v])
