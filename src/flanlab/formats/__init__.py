from .format import (Format, render_example, cot_target, options_block, COT_TRIGGER, ANSWER_PREFIX, TARGET_DELIMITER,  # noqa: F401
                     parse_format)
