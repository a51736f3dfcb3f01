"""Reading ``template.yaml``: CloudFormation's YAML tags and its intrinsic functions.

The local stack derives every name and setting from the template (never a second list of names):
the parameters' defaults, a function's environment, its SQS event source, the bucket's
notification configuration. Values that reference the created stack (``!Ref``, ``!GetAtt``,
``!Sub``...) are resolved through a :class:`Resolver` whose lookups answer from the live stack.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"  # moto's default account


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns ``!Ref x`` into ``{"Ref": "x"}`` and ``!Sub ...`` into ``{"Fn::Sub": ...}``."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if name == "Ref":
        return {"Ref": value}
    if name == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    if name == "Condition":
        return {"Condition": value}
    return {f"Fn::{name}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: str | Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (YAML or JSON) into plain dicts."""
    text = Path(path).read_text(encoding="utf-8")
    loaded = yaml.load(text, Loader=_CfnLoader)
    if not isinstance(loaded, dict) or "Resources" not in loaded:
        raise ValueError(f"{path} is not a CloudFormation template (no Resources)")
    return loaded


def parameter_values(
    template: Mapping[str, Any], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Effective parameter values: the template's defaults, then ``overrides`` (unknown names refused)."""
    declared = template.get("Parameters", {}) or {}
    unknown = set(overrides or {}) - set(declared)
    if unknown:
        raise KeyError(f"parameters not declared in the template: {sorted(unknown)}")
    values = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
    values.update({name: str(value) for name, value in (overrides or {}).items()})
    return values


def resources_of_type(template: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == resource_type
    }


@dataclass
class Resolver:
    """Evaluates intrinsic functions against a created stack.

    ``ref`` answers ``!Ref`` of a resource (its physical id), ``get_att`` answers ``!GetAtt``;
    both are supplied by the caller so this module stays free of boto3.
    """

    parameters: Mapping[str, str]
    ref: Callable[[str], str]
    get_att: Callable[[str, str], str]
    region: str
    stack_name: str
    template: Mapping[str, Any]

    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{self.stack_name}",
        }.get(name)

    def resolve(self, value: Any) -> Any:
        """Resolve every intrinsic inside ``value`` (dicts and lists recursively)."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value if item != {"Ref": "AWS::NoValue"}]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), *_ = value.items()
            handler = self._functions().get(key)
            if handler is not None:
                return handler(argument)
        return {key: self.resolve(item) for key, item in value.items() if item != {"Ref": "AWS::NoValue"}}

    def _functions(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self._ref,
            "Fn::GetAtt": lambda arg: self.get_att(*self.resolve(arg)),
            "Fn::Sub": self._sub,
            "Fn::Join": lambda arg: str(self.resolve(arg[0])).join(str(v) for v in self.resolve(arg[1])),
            "Fn::Select": lambda arg: self.resolve(arg[1])[int(self.resolve(arg[0]))],
            "Fn::Split": lambda arg: str(self.resolve(arg[1])).split(str(self.resolve(arg[0]))),
            "Fn::If": self._if,
            "Fn::Equals": lambda arg: str(self.resolve(arg[0])) == str(self.resolve(arg[1])),
            "Fn::Not": lambda arg: not self.resolve(arg[0]),
            "Fn::And": lambda arg: all(self.resolve(item) for item in arg),
            "Fn::Or": lambda arg: any(self.resolve(item) for item in arg),
            "Condition": self.condition,
            "Fn::FindInMap": lambda arg: self.template["Mappings"][self.resolve(arg[0])][
                self.resolve(arg[1])
            ][self.resolve(arg[2])],
            "Fn::ToJsonString": lambda arg: json.dumps(self.resolve(arg)),
        }

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def _ref(self, name: str) -> str:
        pseudo = self.pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self.parameters:
            return self.parameters[name]
        return self.ref(name)

    def _if(self, argument: list[Any]) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name) else when_false)

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        resolved_vars = {name: str(self.resolve(value)) for name, value in variables.items()}
        out: list[str] = []
        position = 0
        while True:
            start = text.find("${", position)
            if start < 0:
                out.append(text[position:])
                return "".join(out)
            end = text.index("}", start)
            out.append(text[position:start])
            expression = text[start + 2 : end]
            if expression.startswith("!"):  # ${!Literal} stays literal
                out.append("${" + expression[1:] + "}")
            elif expression in resolved_vars:
                out.append(resolved_vars[expression])
            elif "." in expression and self.pseudo(expression) is None:
                logical_id, attribute = expression.split(".", 1)
                out.append(str(self.get_att(logical_id, attribute)))
            else:
                out.append(str(self._ref(expression)))
            position = end + 1
