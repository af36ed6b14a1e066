# The older InferenceConfig form, from before Environment existed.
from bundler.azureml.core import Workspace
from bundler.azureml.core.model import Model, InferenceConfig

ws = Workspace.from_config()
model = Model(ws, "sklearn_regression_model", version=1)
print(model.name, model.version, model.id, model.tags, model.description)
inference_config = InferenceConfig(runtime="python", entry_script="score.py", conda_file="myenv.yml")
package = Model.package(ws, [model], inference_config, generate_dockerfile=True)
package.wait_for_creation(show_output=True)
package.save("./imagefiles-old")
