"""jaxsim.federated — federated training across sites that keep their images.

Sites hold private labelled images (folders read by :func:`jaxsim.io.find_cases`).
A round sends the global network's parameters (flat NumPy arrays of the NNX
state) to every site, each site trains on its own slices (a *local update*:
arrays in, arrays + example count + metrics out), the server aggregates
(FedAvg, FedProx or FedAdam), each site scores the result on its held-out
cases, and the server checkpoints the global network (orbax) so an interrupted
run resumes.

* :func:`run_federated` -- a run in process (``engine="inprocess"``, no Ray) or
  on Flower's simulation engine (``engine="flower"``, needs the extra
  ``federated``); both use the same site and server functions.
* Tasks (:func:`task_names`): ``"direct"`` (Direct-FL U-Net), ``"local"``
  (site-only baseline), ``"sim-fl"`` (Federated Simulation: shared shape and
  material GLO generators, site-local enhancers, the U-Net trained on the
  sites' renderings; :class:`SimFLTask`); :func:`centralised_shape_glo` is the
  centralised baseline of its shape generator.
* :func:`split_acdc_sites` -- ACDC patients as one site per pathology group.
* :mod:`jaxsim.federated.flower` -- the Flower ``ClientApp``/``ServerApp``
  (imports ``flwr``; this package does not until that module is imported).
"""

from ._aggregate import Update as Update
from ._aggregate import aggregate as aggregate
from ._aggregate import weighted_average as weighted_average
from ._client import LocalStateStore as LocalStateStore
from ._client import client_evaluate as client_evaluate
from ._client import client_train as client_train
from ._client import site_data as site_data
from ._config import CPU_MODEL_OPTIONS as CPU_MODEL_OPTIONS
from ._config import STRATEGIES as STRATEGIES
from ._config import FederatedConfig as FederatedConfig
from ._driver import ENGINES as ENGINES
from ._driver import InProcessTransport as InProcessTransport
from ._driver import run_federated as run_federated
from ._local import build_network as build_network
from ._local import evaluate_site as evaluate_site
from ._local import export_network as export_network
from ._local import local_train as local_train
from ._report import final_table as final_table
from ._report import plot_sites as plot_sites
from ._report import write_table as write_table
from ._server import Failure as Failure
from ._server import Transport as Transport
from ._server import run_rounds as run_rounds
from ._simfl import SimFLTask as SimFLTask
from ._simfl import centralised_shape_glo as centralised_shape_glo
from ._simfl import glo_heldout as glo_heldout
from ._sites import ACDC_GROUPS as ACDC_GROUPS
from ._sites import Site as Site
from ._sites import SiteError as SiteError
from ._sites import acdc_group as acdc_group
from ._sites import load_site as load_site
from ._sites import split_acdc_sites as split_acdc_sites
from ._state import from_arrays as from_arrays
from ._state import to_arrays as to_arrays
from ._tasks import FederatedTask as FederatedTask
from ._tasks import LocalResult as LocalResult
from ._tasks import TaskUnavailableError as TaskUnavailableError
from ._tasks import available_tasks as available_tasks
from ._tasks import get_task as get_task
from ._tasks import register_task as register_task
from ._tasks import task_names as task_names


def flower_available() -> bool:
    """Whether Flower (the extra ``federated``) is installed."""
    import importlib.util

    return importlib.util.find_spec("flwr") is not None
