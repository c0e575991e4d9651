"""Amazon ML recipes (spec 6): the grammar, the transformations, and the suggested recipe.

``grammar.parse_recipe`` turns recipe JSON into resolved outputs (``syntax`` reads each expression),
``transforms`` holds the text and bin transformations of one record and ``arrays`` the same over Arrow
batches, ``suggest.suggest_recipe`` writes the default recipe. The fitted featurizer built from a recipe is
``emrml.core.features.FeatureSpace``. Importing this package loads no Arrow (a server's Predict needs none).
"""

from emrml.core.recipe.grammar import Output, OutputKind, Recipe, parse_recipe

__all__ = ["Output", "OutputKind", "Recipe", "parse_recipe"]
