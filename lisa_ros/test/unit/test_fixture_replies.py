"""The token ids of fixture_replies.py are what their names say in the fixture's vocabulary."""

from __future__ import annotations

from transformers import AutoTokenizer

from testbed import fixture_replies as ids
from testbed.tiny_lisa import CHECKPOINT


def test_every_scripted_id_is_the_token_its_name_says() -> None:
    tokenizer = AutoTokenizer.from_pretrained(CHECKPOINT)
    expected = {
        ids.SURE: "▁Sure",
        ids.COMMA: ",",
        ids.SEG: "[SEG]",
        ids.AND: "▁and",
        ids.SPACE: "▁",
        ids.DOT: ".",
        ids.EOS: tokenizer.eos_token,
    }
    assert {token: tokenizer.convert_ids_to_tokens(token) for token in expected} == expected
