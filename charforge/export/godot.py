"""A Godot 4 `SpriteFrames` resource (`.tres`, text format 3) with one animation per expression.

Targets Godot 4.x's text resource format as its documentation describes it (file descriptor
`[gd_resource type="SpriteFrames" load_steps=N format=3]`, one `ext_resource` per texture, then the
`animations` property: name, speed, loop and frames of {duration, texture}). Texture paths are
relative to the `.tres`, which Godot resolves, so the folder can sit anywhere in a project; drop it
in and assign the resource to an AnimatedSprite2D's `sprite_frames`, then `play("joy")`.
"""

from __future__ import annotations

from pathlib import Path

from charforge.export.pack import Format, Pack, write_file, write_text

SPEED = 5.0  # frames per second; each animation has one frame, so only its looping matters


def _animation(label: str, texture_id: str) -> str:
    frame = f'{{\n"duration": 1.0,\n"texture": ExtResource("{texture_id}")\n}}'
    return f'{{\n"frames": [{frame}],\n"loop": true,\n"name": &"{label}",\n"speed": {SPEED}\n}}'


def write(pack: Pack, out: Path) -> list[Path]:
    folder = out / pack.name
    written: list[Path] = []
    resources: list[str] = []
    animations: list[str] = []
    for index, sprite in enumerate(pack.sprites, start=1):
        name = f"{sprite.label}.png"
        written.append(write_file(folder / name, sprite.picture.read_bytes()))
        texture_id = f"{index}_{sprite.label}"
        resources.append(f'[ext_resource type="Texture2D" path="{name}" id="{texture_id}"]')
        animations.append(_animation(sprite.label, texture_id))
    text = "\n".join(
        [
            f'[gd_resource type="SpriteFrames" load_steps={len(resources) + 1} format=3]',
            "",
            *resources,
            "",
            "[resource]",
            f"animations = [{', '.join(animations)}]",
            "",
        ]
    )
    written.append(write_text(folder / f"{pack.name}.tres", text))
    return written


FORMAT = Format(
    name="godot",
    description="Godot 4 SpriteFrames: <name>/<name>.tres with one animation per label, <name>/<label>.png",
    default_set="plutchik",
    music=False,
    write=write,
)
