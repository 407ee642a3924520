// The Probot peer of agentbot's intake benchmark: one issues.labeled handler behind
// createNodeMiddleware on a plain node:http server. Configured like any Probot app,
// from APP_ID, PRIVATE_KEY, WEBHOOK_SECRET and PORT.
import { createServer } from "node:http";
import { createNodeMiddleware, createProbot } from "probot";

let labeled = 0;

// What a Probot app does before deciding anything: look at the label that was added.
const app = (probot) => {
  probot.on("issues.labeled", async (context) => {
    if (context.payload.label?.name === (process.env.TRIGGER_LABEL || "agent")) {
      probot.log.info({ id: context.id }, "trigger label added");
    }
    labeled += 1;
  });
};

const middleware = await createNodeMiddleware(app, {
  probot: createProbot(),
  webhooksPath: "/webhook",
});

const server = createServer((req, res) => {
  if (req.method === "GET" && req.url === "/healthz") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ status: "ok", labeled }));
    return;
  }
  middleware(req, res, () => {
    res.writeHead(404);
    res.end();
  });
});

// Same accept queue as agentbot's server, so neither refuses connections the other takes.
server.listen(Number(process.env.PORT || 3000), process.env.HOST || "127.0.0.1", 1024, () => {
  console.log(`probot bench app listening on ${server.address().port}`);
});

const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
