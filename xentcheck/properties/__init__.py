"""The property suite: Hypothesis properties any backend meeting the contract can be checked against.

    pytest --pyargs xentcheck.properties --backend SPEC [--profile edges|ci|dev|explore] [--ops ...] [--dtypes ...]
    xentcheck check --backend SPEC          (the same suite, with a summary, a JSON report and reproducers)

Modules: test_agreement (every op and vjp against the reference), test_softmax, test_log_softmax,
test_logsumexp, test_cross_entropy (each op's own mathematical properties), test_loss_family (focal, MSE,
hinge) and test_distributions (entropy, KL, H(p, q)): the optional loss family, test_gradients (shape and
dtype, row sums, finite differences, second order).
"""
