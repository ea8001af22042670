"""Training recipes for the models charforge ships (data, architecture, training, evaluation).

Recipes depend on the runtime; the runtime never imports a recipe, so a user who only renders never
loads a training data generator.
"""
