"""The scripted replies of the tests, in the tiny fixture checkpoint's vocabulary, in one place.

The fixture has random weights, so tests force its answers token by token (``ScriptedReply``).
``test_fixture_replies.py`` checks every id below against the fixture's tokenizer.
"""

from __future__ import annotations

SURE, COMMA, SEG, AND, SPACE, DOT, EOS = 368, 432, 503, 290, 402, 416, 2

# "Sure, [SEG] and [SEG] ." (the reference run's answer), without and with EOS.
REPLY = [SURE, COMMA, SEG, AND, SEG, SPACE, DOT]
REPLY_WITH_EOS = [*REPLY, EOS]
REPLY_TEXT = "Sure, [SEG] and [SEG] ."
# "Sure, ." and "Sure, and": answers without a [SEG].
NOTHING_REPLY = [SURE, COMMA, DOT]
NO_SEG_REPLY = [SURE, COMMA, AND, EOS]
# "Sure, and and and ...": an answer as long as needed, without [SEG].
BABBLE = [SURE, COMMA, AND]
# "Sure, [SEG] . and and ... and [SEG] .": an explanatory checkpoint's answer, the first [SEG]
# third, then 40 tokens of explanation before a second [SEG].
EXPLAINED_REPLY = [SURE, COMMA, SEG, SPACE, DOT, *[AND] * 40, SEG, SPACE, DOT, EOS]
