from .format import (Format, render_example, cot_target, options_block, COT_TRIGGER, ANSWER_PREFIX,  # noqa: F401
                     TARGET_DELIMITER, parse_format)
