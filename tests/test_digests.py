"""Artifact ids: the two digest forms, checked against published test vectors, and what a client
chooses with servers old and new."""

from __future__ import annotations

from pathlib import Path

import pytest
from vqpress import digests

# BLAKE3 of the empty input (the BLAKE3 specification's test vectors) and FIPS 180-2's sha256("abc").
BLAKE3_EMPTY = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_ids_of_both_functions_match_the_published_vectors(tmp_path: Path) -> None:
    assert digests.id_of_bytes(b"") == "blake3:" + BLAKE3_EMPTY  # BLAKE3 is the default
    assert digests.id_of_bytes(b"abc", "sha256") == SHA256_ABC  # sha256 ids are the bare digits
    f = tmp_path / "abc"
    f.write_bytes(b"abc" * 500_000)  # more than one read
    h = digests.new("sha256")
    h.update(b"abc" * 500_000)
    assert digests.id_of_file(f, "sha256") == h.hexdigest()
    assert digests.id_of_file(f) == digests.id_of_bytes(b"abc" * 500_000)


def test_parse_and_make_ids() -> None:
    assert digests.parse_id("blake3:" + BLAKE3_EMPTY) == ("blake3", BLAKE3_EMPTY)
    assert digests.parse_id(SHA256_ABC) == ("sha256", SHA256_ABC)
    assert digests.make_id("blake3", BLAKE3_EMPTY.upper()) == "blake3:" + BLAKE3_EMPTY
    for bad in ["", "blake3:", "blake3:" + "0" * 63, "sha256:" + SHA256_ABC, SHA256_ABC.upper(), "b3:" + "0" * 64]:
        assert not digests.is_id(bad)
        with pytest.raises(ValueError, match="is neither 'blake3:' and 64 lowercase hex digits"):
            digests.parse_id(bad)
    with pytest.raises(ValueError, match="unknown digest function 'md5'"):
        digests.make_id("md5", SHA256_ABC)
    with pytest.raises(ValueError, match="64 hex digits"):
        digests.make_id("sha256", "abc")


def test_a_client_names_uploads_by_what_the_server_offers() -> None:
    assert digests.choose(["blake3", "sha256"]) == "blake3"
    assert digests.choose(["sha256", "blake3"]) == "sha256"  # a server told to name content by sha256
    assert digests.choose([]) == "sha256"  # a server before digest functions
    assert digests.choose(["k12", "sha256"]) == "sha256"  # one this client does not know is skipped
    assert digests.short("blake3:" + BLAKE3_EMPTY) == "blake3:af1349b9f5f9"
    assert digests.short(SHA256_ABC, 8) == "ba7816bf"


def test_an_id_as_a_file_name_has_no_colon() -> None:
    # A result saved under its id (it has no name) or a worker's scratch link must be a valid file
    # name on every system, Windows included.
    assert digests.file_name("blake3:" + BLAKE3_EMPTY) == "blake3-" + BLAKE3_EMPTY
    assert digests.file_name("blake3:" + BLAKE3_EMPTY, 16) == "blake3-af1349b9f5f9a1a6"
    assert digests.file_name(SHA256_ABC) == SHA256_ABC
    with pytest.raises(ValueError, match="neither"):
        digests.file_name("blake3:../../etc/passwd")
