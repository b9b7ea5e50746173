// The Java CMD of the netns tests (run as `java Probe.java STEPS...`): the
// steps of testdata/probe that apply, with the JVM's own resolver and
// sockets.
import java.io.*;
import java.net.*;
import java.security.MessageDigest;
import java.util.*;
import java.util.concurrent.*;

public class Probe {
    static InetSocketAddress addr(String s) {
        int i = s.lastIndexOf(':');
        return new InetSocketAddress(s.substring(0, i), Integer.parseInt(s.substring(i + 1)));
    }

    static String run(String op, String arg) throws Exception {
        switch (op) {
            case "resolve": {
                TreeSet<String> out = new TreeSet<>();
                for (InetAddress a : InetAddress.getAllByName(arg)) if (a instanceof Inet4Address) out.add(a.getHostAddress());
                return String.join(",", out);
            }
            case "get":
                try (Socket c = new Socket()) {
                    c.connect(addr(arg), 10000);
                    return new BufferedReader(new InputStreamReader(c.getInputStream())).readLine();
                }
            case "echo": {
                int i = arg.lastIndexOf(':');
                int n = Integer.parseInt(arg.substring(i + 1));
                byte[] data = new byte[n];
                new Random().nextBytes(data);
                try (Socket c = new Socket()) {
                    c.connect(addr(arg.substring(0, i)), 10000);
                    Thread w = new Thread(() -> {
                        try { c.getOutputStream().write(data); c.shutdownOutput(); } catch (IOException e) { throw new UncheckedIOException(e); }
                    });
                    w.start();
                    MessageDigest h = MessageDigest.getInstance("SHA-256");
                    InputStream in = c.getInputStream();
                    byte[] buf = new byte[65536];
                    long got = 0;
                    for (int k; (k = in.read(buf)) > 0; got += k) h.update(buf, 0, k);
                    w.join();
                    if (got != n || !Arrays.equals(h.digest(), MessageDigest.getInstance("SHA-256").digest(data)))
                        throw new Exception("got " + got + " bytes back, checksum differs");
                    return n + " bytes";
                }
            }
            case "conc": {
                int i = arg.lastIndexOf(':');
                int n = Integer.parseInt(arg.substring(i + 1));
                InetSocketAddress a = addr(arg.substring(0, i));
                ExecutorService ex = Executors.newFixedThreadPool(n);
                List<Future<Socket>> fs = new ArrayList<>();
                for (int k = 0; k < n; k++) fs.add(ex.submit(() -> { Socket s = new Socket(); s.connect(a, 20000); return s; }));
                List<Socket> conns = new ArrayList<>();
                for (Future<Socket> f : fs) conns.add(f.get());
                ex.shutdown();
                for (int k = 0; k < n; k++) conns.get(k).getOutputStream().write(("conn " + k + "\n").getBytes());
                for (int k = 0; k < n; k++) {
                    String line = new BufferedReader(new InputStreamReader(conns.get(k).getInputStream())).readLine();
                    if (!("conn " + k).equals(line)) throw new Exception("conn " + k + " got " + line);
                    conns.get(k).close();
                }
                return n + " served";
            }
            case "refused":
                try (Socket c = new Socket()) {
                    c.connect(addr(arg), 20000);
                } catch (ConnectException e) {
                    return "refused";
                }
                throw new Exception("not refused");
            case "http": {
                HttpURLConnection c = (HttpURLConnection) new URL(arg).openConnection();
                c.setConnectTimeout(20000);
                c.setReadTimeout(20000);
                int status = c.getResponseCode();
                String first = new BufferedReader(new InputStreamReader(c.getInputStream())).readLine();
                return status + " " + (first == null ? "" : first.trim());
            }
            case "listen":
                try (ServerSocket l = new ServerSocket()) {
                    l.bind(addr(arg));
                    System.out.println("listening");
                    System.out.flush();
                    try (Socket c = l.accept()) {
                        c.getOutputStream().write("hello from cmd\n".getBytes());
                    }
                    return "served";
                }
        }
        throw new Exception("unknown step " + op);
    }

    public static void main(String[] args) {
        for (String step : args) {
            int i = step.indexOf(':');
            String op = i < 0 ? step : step.substring(0, i), arg = i < 0 ? "" : step.substring(i + 1);
            try {
                System.out.println(step + " ok " + run(op, arg));
            } catch (Exception e) {
                System.out.println(step + " FAIL " + e);
                System.exit(1);
            }
            System.out.flush();
        }
    }
}
