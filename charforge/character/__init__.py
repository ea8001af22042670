"""A character of a workspace: the `Character` handle and its verbs (identity, feel, bgm, regions).

The verb modules never import the handle at run time (only for type checking), so the handle can
forward to them without an import circle.
"""

from charforge.character.handle import Character

__all__ = ["Character"]
