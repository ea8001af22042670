"""charforge-mini: the procedural portrait world the default model is trained on and measured against."""
