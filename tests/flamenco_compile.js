// Runs a Flamenco job type's compileJob() under Node with a stand-in for the manager's `author`
// API (the calls Flamenco 3.x provides: author.Task, author.Command, task.addCommand,
// task.addDependency, job.addTask), and prints the compiled tasks as JSON.
// Usage: node flamenco_compile.js JOB_TYPE.js SETTINGS.json
const fs = require("fs");
const vm = require("vm");
const [file, settingsFile] = process.argv.slice(2);
const tasks = [];
const author = {
  Task(name, type) {
    if (!String(name).trim() || !String(type).trim()) throw new Error("author.Task needs a name and a type");
    const task = { name, type, commands: [], dependencies: [] };
    task.addCommand = (cmd) => task.commands.push(cmd);
    task.addDependency = (other) => task.dependencies.push(other.name);
    return task;
  },
  Command(name, parameters) { return { name, parameters }; },
};
const job = { settings: JSON.parse(fs.readFileSync(settingsFile, "utf8")), addTask: (t) => tasks.push(t) };
const sandbox = { author, print: console.log, alert: console.error };
vm.createContext(sandbox);
vm.runInContext(fs.readFileSync(file, "utf8") + "\n;this.JOB_TYPE = JOB_TYPE;", sandbox, { filename: file });
try {
  sandbox.compileJob(job);
} catch (err) {
  console.log(JSON.stringify({ error: String(err) }));
  process.exit(3);
}
const keys = sandbox.JOB_TYPE.settings.map((s) => s.key);
console.log(JSON.stringify({ label: sandbox.JOB_TYPE.label, settings: keys,
  tasks: tasks.map(({ name, type, commands, dependencies }) => ({ name, type, commands, dependencies })) }));
