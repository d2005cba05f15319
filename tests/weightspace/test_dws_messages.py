"""dws refuses CNNs with a message that says what it reads (dense layer chains)."""

import pytest
from ws_helpers import cnn_spec

from catalog.errors import WeightzooError
from weightspace.models.registry import build_metanetwork


def test_dws_on_a_cnn_names_what_it_reads():
    with pytest.raises(WeightzooError, match="dense layer chains") as e:
        build_metanetwork("dws", cnn_spec(), 1)
    assert "mlp and siren" in str(e.value) and "'nfn' or 'gmn'" in str(e.value)
