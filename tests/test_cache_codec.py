"""How shared stores sign entries (aicost.cache.serialize): what a signature binds, and what it refuses."""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle

import pytest

from aicost import _log
from aicost.cache.entry import Entry
from aicost.cache.serialize import EntryCodec


def test_the_signature_binds_the_key():
    codec = EntryCodec("s3cret")
    raw = codec.dump("aicost:cache:f:aaa", Entry(value="answer to a"))
    assert codec.load("aicost:cache:f:aaa", raw).value == "answer to a"
    assert codec.load("aicost:cache:f:bbb", raw) is None  # replayed under another key
    assert codec.load("aicost:cache:f:aa", raw) is None
    assert EntryCodec("other").load("aicost:cache:f:aaa", raw) is None


def test_an_entry_signed_without_its_key_is_a_miss_and_logged(caplog):
    """Entries written before signatures covered the key (tag ``s``: HMAC of the pickle alone) could be moved
    between keys by anyone who can write to the store: after the upgrade they are misses, rewritten on the next
    call, never served."""
    payload = pickle.dumps(Entry(value="old"), protocol=pickle.HIGHEST_PROTOCOL)
    old = b"s" + hmac.new(b"s3cret", payload, hashlib.sha256).digest() + payload
    _log.forget("cache:signature")
    with caplog.at_level(logging.WARNING, logger="aicost"):
        assert EntryCodec("s3cret").load("aicost:cache:f:aaa", old) is None
    assert "signature" in caplog.text


def test_unsigned_entries_round_trip_and_are_refused_by_a_signing_codec():
    raw = EntryCodec().dump("aicost:cache:f:aaa", Entry(value=1))
    assert EntryCodec().load("aicost:cache:f:aaa", raw).value == 1
    assert EntryCodec("s3cret").load("aicost:cache:f:aaa", raw) is None


@pytest.mark.parametrize("secret", ["", b"", 5])
def test_a_bad_secret_is_refused(secret):
    from aicost.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="secret"):
        EntryCodec(secret)
