from __future__ import annotations

import pytest

from tenant_metrics.core import credentials


def test_issue_then_reissue_gives_the_same_password() -> None:
    key = credentials.derive_key("a-long-enough-operator-secret")
    first = credentials.issue(key)
    again = credentials.issue(key, first.username, first.secret_nonce)
    assert again.password == first.password
    assert credentials.verify(first.password, first.password_sha256)
    assert not credentials.verify(first.password + "x", first.password_sha256)


def test_a_different_key_derives_a_different_password() -> None:
    one = credentials.issue(credentials.derive_key("operator-secret-number-one"))
    two = credentials.issue(credentials.derive_key("operator-secret-number-two"), one.username, one.secret_nonce)
    assert one.password != two.password


def test_secrets_stay_out_of_repr_and_have_entropy() -> None:
    issued = credentials.issue(credentials.derive_key("a-long-enough-operator-secret"))
    assert issued.password not in repr(issued)
    assert len(issued.password) >= 40
    assert issued.username.startswith("tm-")


def test_short_key_material_is_refused() -> None:
    with pytest.raises(ValueError):
        credentials.derive_key("short")
