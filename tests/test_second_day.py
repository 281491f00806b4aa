"""Issue 20, a newcomer's second day: junk model files, changed budgets in reproduce, honest
few-seed statistics, the wrong input range, report lines that say what they mean."""

from __future__ import annotations

import pytest

from winn_robust.errors import UserError
from winn_robust.model_sources import load_model


@pytest.mark.parametrize("content", [b"junk\n", b"PK\x03\x04junk", bytes(range(256)) * 2])
def test_a_junk_model_file_is_one_user_error(tmp_path, content):
    path = tmp_path / "junk.ts"
    path.write_bytes(content)
    with pytest.raises(UserError, match="TorchScript|checkpoint"):
        load_model(str(path))
