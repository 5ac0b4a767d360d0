"""Resolve a synthesised template's intrinsics to plausible strings, so AWS's own parsers can read a definition.

A state machine's `DefinitionString` is an `Fn::Join` of literals, `Ref`s and `Fn::GetAtt`s: cfn-lint never
looks inside it. Resolved here the way CloudFormation would at deploy time, with placeholders of the right shape
(pseudo parameters get valid values, other references an ARN-shaped string), it can be fed to the ASL validator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PSEUDO_PARAMETERS = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "photo-labeler",
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/photo-labeler/0000",
    "AWS::NoValue": "",
}


def placeholder(logical_id: str, attribute: str | None = None, type_name: str | None = None) -> str:
    """An ARN-shaped stand-in: valid wherever the ASL schema wants an ARN, a name or any string.

    A Lambda function's ARN keeps its real shape: a Task whose Resource is one is a Lambda invoke.
    """
    if type_name == "AWS::Lambda::Function":
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical_id}"
    suffix = f"-{attribute.replace('.', '-')}" if attribute else ""
    return f"arn:aws:states:{REGION}:{ACCOUNT}:resource:{logical_id}{suffix}"


Render = Callable[[str, str | None, str | None], str]  # (logical id, attribute or None, resource type)


def resolve(value: Any, template: dict[str, Any], render: Render | None = None, region: str = REGION) -> Any:
    """`value` with every Ref / Fn::GetAtt / Fn::Join / Fn::FindInMap / Fn::Select / Fn::Split / Fn::Sub replaced
    by a string; `template` gives the Mappings (looked up with the placeholder region) and resource types.
    `render` names a resource's Ref (attribute None) or attribute; default: `placeholder`. `region`: what
    AWS::Region stands for (a pinned stack's own)."""
    pseudo = {**PSEUDO_PARAMETERS, "AWS::Region": region}
    mappings = template.get("Mappings", {})
    resources = template.get("Resources", {})
    name_of: Render = render or placeholder

    def again(inner: Any) -> Any:
        return resolve(inner, template, render, region)

    def type_of(logical_id: str) -> str | None:
        return resources.get(logical_id, {}).get("Type")

    if isinstance(value, list):
        return [again(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((name, argument),) = value.items()
        if name == "Ref":
            return pseudo.get(argument) or name_of(argument, None, type_of(argument))
        if name == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return name_of(logical_id, attribute, type_of(logical_id))
        if name == "Fn::Join":
            separator, parts = argument
            return separator.join(str(again(part)) for part in again(parts))
        if name == "Fn::FindInMap":
            table, first, second = (again(part) for part in argument)
            return mappings[table][first][second]
        if name == "Fn::Select":
            index, items = argument
            return again(items)[int(again(index))]
        if name == "Fn::Split":
            separator, text = argument
            return str(again(text)).split(separator)
        if name == "Fn::Sub":
            text = argument if isinstance(argument, str) else argument[0]
            variables = {} if isinstance(argument, str) else again(argument[1])
            for key, replacement in {**pseudo, **variables}.items():
                text = text.replace("${" + key + "}", str(replacement))
            return text
        if name.startswith("Fn::"):
            raise ValueError(f"no placeholder rule for {name}: {value}")
    return {key: again(item) for key, item in value.items()}
