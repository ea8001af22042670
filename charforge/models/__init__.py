"""Diffusers folders of the models charforge trains itself and ships (package data, loaded offline)."""
