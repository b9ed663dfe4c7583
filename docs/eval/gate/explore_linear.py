import numpy as np
from explore_common import gains, tr, va

from rbqe.exit_policy import FEATURES
from rbqe.train import gate

# correlation of the ridge fit's predictions with the gains, on val and on train
for ridge in (0.3, 3, 30):
    p = gate.fit(tr, ridge)
    pv = gate.predictions(p, va.view('tables'))
    pt = gate.predictions(p, tr.view('tables'))
    gv = gains(va)
    gt = gains(tr)
    print(ridge, [round(np.corrcoef(pv[:, k], gv[:, k])[0, 1], 3) for k in range(4)],
          [round(np.corrcoef(pt[:, k], gt[:, k])[0, 1], 3) for k in range(4)])
# univariate correlations at exit 1 and 2
for k in (0, 1, 2):
    cs = [(abs(np.corrcoef(tr.x[:, k, j], gains(tr)[:, k])[0, 1]) if tr.x[:, k, j].std() > 0
           else 0, FEATURES[j]) for j in range(len(FEATURES))]
    print(k + 1, sorted(cs, reverse=True)[:6])
print('gain std per exit', gains(va).std(0), 'mean', gains(va).mean(0))
