from .format import Format, render_example, cot_target, options_block, COT_TRIGGER, ANSWER_PREFIX, parse_format  # noqa: F401
