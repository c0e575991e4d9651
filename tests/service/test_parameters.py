"""Reading CreateMLModel's ``sgd.*`` parameters: every key, the defaults, and errors naming the key."""

from __future__ import annotations

import pytest

from emrml.core.linear import TrainingParameters
from emrml.errors import InvalidInputException
from emrml.service.parameters import parse_parameters


def test_missing_parameters_take_the_api_defaults() -> None:
    expected = TrainingParameters(max_passes=10, shuffle="none", l1=0.0, l2=0.0, max_model_size=33_554_432)
    assert parse_parameters(None) == expected
    assert parse_parameters({}) == expected


def test_parameters_parse_every_key_and_echo_them() -> None:
    given = {
        "sgd.maxPasses": "100",
        "sgd.shuffleType": "auto",
        "sgd.l2RegularizationAmount": "1e-4",
        "sgd.maxMLModelSizeInBytes": "104857600",
    }
    params = parse_parameters(given)
    assert params == TrainingParameters(max_passes=100, shuffle="auto", l2=1e-4, max_model_size=104_857_600)
    assert params.to_api() == {
        "algorithm": "sgd",
        "sgd.maxMLModelSizeInBytes": "104857600",
        "sgd.maxPasses": "100",
        "sgd.shuffleType": "auto",
        "sgd.l1RegularizationAmount": "0.0",
        "sgd.l2RegularizationAmount": "0.0001",
    }
    # GetMLModel's echo (with "algorithm") is accepted back unchanged.
    assert parse_parameters(params.to_api()) == params
    assert (
        parse_parameters({"sgd.l1RegularizationAmount": "1e-6"}).to_api()["sgd.l1RegularizationAmount"]
        == "1e-6"
    )


def test_console_defaults_fill_missing_keys_when_asked() -> None:
    params = parse_parameters({"sgd.maxPasses": "3"}, defaults=TrainingParameters.console())
    assert params == TrainingParameters(max_passes=3, shuffle="auto", l2=1e-6, max_model_size=104_857_600)


def test_a_chosen_regularization_is_not_refused_for_the_default_of_the_other() -> None:
    """Under the console defaults (L2 1e-6), asking for L1 alone trains with L1 and no L2."""
    console = TrainingParameters.console()
    l1_only = parse_parameters({"sgd.l1RegularizationAmount": "1e-6"}, defaults=console)
    assert (l1_only.l1, l1_only.l2, l1_only.shuffle) == (1e-6, 0.0, "auto")
    assert parse_parameters({"sgd.l2RegularizationAmount": "1e-4"}, defaults=console).l2 == 1e-4
    assert parse_parameters({"sgd.l1RegularizationAmount": "0"}, defaults=console).l2 == 1e-6
    with pytest.raises(InvalidInputException, match="cannot both be non-zero"):
        parse_parameters(
            {"sgd.l1RegularizationAmount": "1e-6", "sgd.l2RegularizationAmount": "1e-6"}, defaults=console
        )


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"sgd.maxPass": "10"}, "unknown key 'sgd.maxPass' (did you mean 'sgd.maxPasses'"),
        ({"maxpasses": "10"}, "unknown key 'maxpasses' (did you mean 'sgd.maxPasses'"),
        ({"sgd.bogus": "1"}, "unknown key 'sgd.bogus'; allowed keys: sgd.max"),
        ({"algorithm": "xgboost"}, "algorithm must be 'sgd'"),
        ({"sgd.maxPasses": "ten"}, "sgd.maxPasses must be an integer from 1 to 10,000"),
        ({"sgd.maxPasses": "2.5"}, "sgd.maxPasses must be an integer from 1 to 10,000"),
        ({"sgd.maxPasses": "0"}, "sgd.maxPasses must be from 1 to 10,000; got 0"),
        ({"sgd.maxPasses": "10001"}, "sgd.maxPasses must be from 1 to 10,000; got 10,001"),
        # Past the 4,300 digits Python's int() reads: out of range all the same, not a ValueError.
        (
            {"sgd.maxPasses": "9" * 5000},
            "sgd.maxPasses must be from 1 to 10,000; got a number of 5,000 digits",
        ),
        (
            {"sgd.maxMLModelSizeInBytes": "99999"},
            "sgd.maxMLModelSizeInBytes must be from 100,000 to 2,147,483,648",
        ),
        ({"sgd.maxMLModelSizeInBytes": "2147483649"}, "sgd.maxMLModelSizeInBytes must be from 100,000"),
        ({"sgd.maxMLModelSizeInBytes": "1e6"}, "sgd.maxMLModelSizeInBytes must be an integer"),
        ({"sgd.shuffleType": "random"}, "sgd.shuffleType must be 'auto' or 'none'"),
        ({"sgd.l1RegularizationAmount": "-1e-6"}, "sgd.l1RegularizationAmount must be a number from 0"),
        ({"sgd.l1RegularizationAmount": "abc"}, "sgd.l1RegularizationAmount must be a number from 0"),
        ({"sgd.l2RegularizationAmount": "NaN"}, "sgd.l2RegularizationAmount must be a number from 0"),
        ({"sgd.l2RegularizationAmount": "inf"}, "sgd.l2RegularizationAmount must be a number from 0"),
        ({"sgd.l2RegularizationAmount": "1e400"}, "sgd.l2RegularizationAmount must be a number from 0"),
        (
            {"sgd.l1RegularizationAmount": "1e-6", "sgd.l2RegularizationAmount": "1e-6"},
            "cannot both be non-zero",
        ),
    ],
)
def test_invalid_parameters_name_the_key_and_range(parameters: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInputException, match=message.replace("(", r"\(")):
        parse_parameters(parameters)


def test_boundary_values_are_accepted() -> None:
    low = parse_parameters({"sgd.maxPasses": "1", "sgd.maxMLModelSizeInBytes": "100000"})
    high = parse_parameters({"sgd.maxPasses": "10000", "sgd.maxMLModelSizeInBytes": "2147483648"})
    assert (low.max_passes, low.max_model_size) == (1, 100_000)
    assert (high.max_passes, high.max_model_size) == (10_000, 2_147_483_648)
    both_zero = {"sgd.l1RegularizationAmount": "0", "sgd.l2RegularizationAmount": "0.0"}
    assert parse_parameters(both_zero) == TrainingParameters()


# ---------------------------------------------------------------------------------- recovery of known models
