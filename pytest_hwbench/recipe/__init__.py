"""Recipes: load + validate + ``${ENV}`` interpolation. See ``loader.load_recipe``."""
