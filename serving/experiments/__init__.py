"""A/B experiments on the request path: which variant a customer is in and what answers for it
(`config`: the experiments file and the assignment), how each variant fares against the control
(`guardrail`), answers of a shadow model compared off the request path (`shadow`), and the two
calls a request makes (`lab.Lab`: choose before the answer, settle after)."""
