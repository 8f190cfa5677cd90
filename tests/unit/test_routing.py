"""Routing rules: first match wins, alternatives and patterns, no match is "not applicable"."""

import pytest

from portal.errors import Invalid
from portal.inference.routing import DEFAULT_RULES, check_rules, route


def test_defaults_route_grey_scale_modalities_to_the_builtin_model():
    assert route(DEFAULT_RULES, modality="MR") == "lightbox-quality"
    assert route(DEFAULT_RULES, modality="cr") == "lightbox-quality"
    assert route(DEFAULT_RULES, modality="US") is None
    assert route(DEFAULT_RULES, modality="") is None


def test_rules_match_every_given_field_and_first_match_wins():
    rules = check_rules([
        {"modality": "CT|MR", "body_part": "HEAD", "model": "brain"},
        {"modality": "CT", "description": r"^chest\b", "model": "chest"},
        {"sop_class": "1.2.840.10008.5.1.4.1.1.1", "model": "cr"},
        {"modality": "CT", "model": "any-ct"},
    ])
    assert route(rules, modality="MR", body_part="head") == "brain"
    assert route(rules, modality="CT", description="Chest 2mm") == "chest"
    assert route(rules, modality="CT", description="abdomen") == "any-ct"
    assert route(rules, modality="CR", sop_class="1.2.840.10008.5.1.4.1.1.1") == "cr"
    assert route(rules, modality="MR", body_part="KNEE") is None


@pytest.mark.parametrize("rules", [[{"modality": "CT"}], [{"model": ""}], [{"description": "([", "model": "m"}], ["x"]])
def test_bad_rules_are_refused(rules):
    with pytest.raises(Invalid):
        check_rules(rules)
